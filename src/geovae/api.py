"""Verbs over one AnnData (scanpy style) and the file-level runs behind the CLI.

``fit``/``embed``/``cluster`` work in place on an AnnData and write results under the
conventional keys: ``obsm['X_geovae']``, ``obs['geovae_cluster']`` (categorical),
``obsm['X_umap']``, ``uns['geovae']``. ``run_fit``/``run_embed``/``run_cluster`` read a file,
call them and write the outputs atomically; the CLI is a thin layer over those.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch

from geovae.data import prepare
from geovae.errors import InputError, OptionError
from geovae.io import atomic_path, input_stem, read, write_h5ad
from geovae.model import GeoVAE

KEY = "geovae"
REP = "X_geovae"
CLUSTER_KEY = "geovae_cluster"
NEIGHBORS_KEY = "geovae_neighbors"


def fit(
    adata: ad.AnnData,
    *,
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    device: str = "auto",
    progress: bool = True,
    **model_kwargs: Any,
) -> GeoVAE:
    """Train a `GeoVAE` on ``adata`` and write ``obsm['X_geovae']`` and ``uns['geovae']``.

    ``model_kwargs`` go to `GeoVAE` (latent, latent_dim, likelihood, layer, batch_key,
    label_key, n_top_genes, seed, ...). Returns the trained model.
    """
    model = GeoVAE(adata, **model_kwargs)
    model.train(epochs=epochs, batch_size=batch_size, lr=lr, device=device, progress=progress)
    _write_latent(adata, model, model.get_latent(adata))
    adata.uns[KEY] = model.summary()
    if model.setup_notes:
        adata.uns[KEY]["notes"] = model.setup_notes
    _write_model_outputs(model, adata)
    return model


def embed(adata: ad.AnnData, model: GeoVAE | str | os.PathLike, device: str = "cpu") -> GeoVAE:
    """Embed ``adata`` with a trained model; genes are matched by name.

    Missing genes are filled with zeros and reported in ``uns['geovae']['missing_genes']``;
    genes the model does not know are ignored.
    """
    if not isinstance(model, GeoVAE):
        model = GeoVAE.load(model, device=device)
    prepared = prepare(adata, model.spec, new_data=True)
    _write_latent(adata, model, model.latent_from(prepared))
    info = model.summary()
    info["n_missing_genes"] = prepared.n_missing_genes
    if prepared.missing_genes:
        info["missing_genes"] = np.asarray(prepared.missing_genes[:1000], dtype=str)
    info["n_extra_genes_dropped"] = int(adata.n_vars - (model.spec.n_genes
                                                        - prepared.n_missing_genes))
    adata.uns[KEY] = info
    _write_model_outputs(model, adata, prepared=prepared)
    return model


def _write_latent(adata: ad.AnnData, model: GeoVAE, z: np.ndarray) -> None:
    """``obsm['X_geovae']`` in the manifold's coordinates; Poincare-ball coordinates too for
    hyperbolic latents (``obsm['X_geovae_poincare']``, inside the unit ball, for plotting)."""
    adata.obsm[REP] = z
    if model.module.latent.geometry == "hyperbolic":
        ball = model.module.latent.manifold.to_plot(torch.as_tensor(z, dtype=torch.float64))
        adata.obsm[f"{REP}_poincare"] = ball.numpy().astype(np.float32)


def add_volume(adata: ad.AnnData, model: GeoVAE) -> None:
    """``obs['geovae_volume']`` = log sqrt(det JᵀJ) of the decoder mean at each cell's latent."""
    adata.obs["geovae_volume"] = model.log_volume(adata)


def _write_model_outputs(model: GeoVAE, adata: ad.AnnData, prepared: Any = None) -> None:
    """Model-specific extras (cluster probabilities, predicted labels) where the model has them."""
    writer = getattr(model.module, "write_outputs", None)
    if writer is not None:
        writer(model, adata, prepared)


def cluster(
    adata: ad.AnnData,
    *,
    use_rep: str = REP,
    resolution: float = 1.0,
    n_neighbors: int = 15,
    key_added: str = CLUSTER_KEY,
    seed: int = 0,
    umap: bool = True,
    method: str = "leiden",
) -> ad.AnnData:
    """Leiden clusters on the kNN graph of ``obsm[use_rep]`` (and UMAP from the same graph).

    The graph uses the latent's own distance (great-circle on the sphere, geodesic on the
    hyperboloid) when the representation comes from a curved geovae model.
    """
    import scanpy as sc

    if use_rep not in adata.obsm:
        avail = ", ".join(adata.obsm.keys()) or "none"
        raise OptionError(f"representation '{use_rep}' not in obsm (available: {avail}); "
                          "run `geovae fit` first or pass --use-rep")
    if resolution <= 0:
        raise OptionError("--resolution must be positive")
    rep = np.asarray(adata.obsm[use_rep])
    if not np.isfinite(rep).all():
        raise InputError(f"obsm['{use_rep}'] contains NaN/Inf values")
    if method == "mixture":
        probs = adata.obsm.get("geovae_cluster_probs")
        if probs is None:
            raise OptionError("--method mixture needs obsm['geovae_cluster_probs'] from a "
                              "`geovae fit --model cgmvae` run; use --method leiden otherwise")
        labels = np.asarray(probs).argmax(1).astype(str)
        adata.obs[key_added] = _categorical(labels)
    elif method != "leiden":
        raise OptionError(f"unknown --method '{method}': use leiden or mixture")
    n_neighbors = max(2, min(n_neighbors, adata.n_obs - 1))
    geometry = _geometry_of(adata, use_rep)
    transformer = _knn_transformer(geometry, n_neighbors)
    threads = torch.get_num_threads()
    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep=use_rep, key_added=NEIGHBORS_KEY,
                    transformer=transformer, random_state=seed)
    torch.set_num_threads(threads)  # scanpy's neighbours reset torch's thread count
    if method == "leiden":
        sc.tl.leiden(adata, resolution=resolution, key_added=key_added, random_state=seed,
                     neighbors_key=NEIGHBORS_KEY, flavor="igraph", n_iterations=2,
                     directed=False)
        adata.obs[key_added] = _categorical(adata.obs[key_added].astype(str).to_numpy())
    if umap:
        sc.tl.umap(adata, neighbors_key=NEIGHBORS_KEY, random_state=seed)
    info = adata.uns.setdefault(KEY, {})
    info["cluster"] = {"method": method, "use_rep": use_rep, "resolution": float(resolution),
                       "n_neighbors": int(n_neighbors), "metric": geometry,
                       "n_clusters": int(adata.obs[key_added].nunique())}
    return adata


def _categorical(labels: np.ndarray) -> Any:
    import pandas as pd
    from natsort import natsorted

    return pd.Categorical(labels, categories=natsorted(set(labels)))


def _geometry_of(adata: ad.AnnData, use_rep: str) -> str:
    if use_rep != REP:
        return "euclidean"
    info = adata.uns.get(KEY, {})
    latent = info.get("latent", {}) if isinstance(info, dict) else {}
    return str(latent.get("geometry", "euclidean"))


def _knn_transformer(geometry: str, n_neighbors: int) -> Any:
    """Exact kNN with the latent's own distance (sklearn for Euclidean; no pynndescent)."""
    if geometry == "euclidean":
        from sklearn.neighbors import KNeighborsTransformer

        return KNeighborsTransformer(n_neighbors=n_neighbors, metric="euclidean",
                                     mode="distance")
    from geovae.neighbors import GeodesicKNN

    return GeodesicKNN(geometry, n_neighbors)


# ---------------------------------------------------------------------- file-level runs
@dataclass
class RunResult:
    """What a file-level run wrote, for the CLI to report."""

    out: Path
    plot: Path | None = None
    model_dir: Path | None = None
    messages: list[str] = field(default_factory=list)


def default_outputs(input_path: str | os.PathLike) -> tuple[Path, Path]:
    """``data/x.csv.gz`` -> (``data/x.geovae.h5ad``, ``data/x.geovae.model``)."""
    p = Path(input_path)
    stem = input_stem(p)
    return p.with_name(f"{stem}.geovae.h5ad"), p.with_name(f"{stem}.geovae.model")


def _check_out(input_path: Path, out: Path) -> None:
    if out.suffix.lower() != ".h5ad":
        raise OptionError(f"--out '{out}' must end in .h5ad")
    if out.exists() and out.resolve() == input_path.resolve():
        raise OptionError("--out is the input file: geovae never overwrites its input; "
                          "choose another --out")
    if not out.parent.exists():
        raise OptionError(f"output folder '{out.parent}' does not exist: create it first")


def _plot_path(out: Path, plot: str | os.PathLike | None) -> Path:
    return Path(plot) if plot else out.with_name(out.name[: -len(".h5ad")] + ".umap.png")


def run_fit(input_path: str | os.PathLike, out: str | os.PathLike | None = None,
            model_dir: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
            resolution: float = 1.0, command: str | None = None, volume: bool = False,
            **fit_kwargs: Any) -> RunResult:
    """Read ``input_path``, fit, cluster, plot, write OUT.h5ad and the model directory."""
    input_path = Path(input_path)
    default_out, default_model = default_outputs(input_path)
    out_p = Path(out) if out else default_out
    model_p = Path(model_dir) if model_dir else (default_model if not out else
                                                 out_p.with_name(out_p.name[:-5] + ".model"))
    _check_out(input_path, out_p)
    adata = read(input_path)
    model = fit(adata, **fit_kwargs)
    if volume:
        add_volume(adata, model)
    result = RunResult(out=out_p, model_dir=model_p)
    if model.setup_notes:
        result.messages.append(model.setup_notes)
    hist = model.history
    if hist is not None and hist.stopped_early:
        result.messages.append(f"early stopping after epoch {len(hist.train)}; the weights of "
                               f"the best validation epoch ({hist.best_epoch + 1}) were kept")
    return _finish(adata, model, result, plot, resolution, command, fit_kwargs.get("seed", 0),
                   model_p)


def run_embed(model_dir: str | os.PathLike, input_path: str | os.PathLike,
              out: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
              resolution: float = 1.0, device: str = "cpu", command: str | None = None,
              volume: bool = False) -> RunResult:
    """Embed a new file with a saved model; cluster, plot and write OUT.h5ad."""
    input_path = Path(input_path)
    model = GeoVAE.load(model_dir, device=device)
    out_p = Path(out) if out else default_outputs(input_path)[0]
    _check_out(input_path, out_p)
    adata = read(input_path)
    embed(adata, model)
    if volume:
        add_volume(adata, model)
    result = RunResult(out=out_p)
    n_missing = adata.uns[KEY]["n_missing_genes"]
    if n_missing:
        result.messages.append(f"{n_missing} of the model's {model.spec.n_genes} genes are "
                               "missing from the input and were filled with zeros")
    extra = adata.uns[KEY]["n_extra_genes_dropped"]
    if extra:
        result.messages.append(f"{extra} input genes unknown to the model were ignored")
    return _finish(adata, model, result, plot, resolution, command, model.config["seed"], None)


def run_cluster(input_path: str | os.PathLike, out: str | os.PathLike,
                use_rep: str = REP, resolution: float = 1.0, method: str = "leiden",
                plot: str | os.PathLike | None = None, seed: int = 0,
                command: str | None = None) -> RunResult:
    """Cluster an embedding already in a file; writes OUT.h5ad and a UMAP plot."""
    input_path = Path(input_path)
    out_p = Path(out)
    _check_out(input_path, out_p)
    adata = read(input_path)
    cluster(adata, use_rep=use_rep, resolution=resolution, seed=seed, method=method)
    adata.uns[KEY]["cluster"]["command"] = command or ""
    plot_p = _plot_path(out_p, plot)
    _save_plot(adata, plot_p, [])
    write_h5ad(adata, out_p)
    return RunResult(out=out_p, plot=plot_p)


def _finish(adata: ad.AnnData, model: GeoVAE, result: RunResult, plot: Any, resolution: float,
            command: str | None, seed: int, model_p: Path | None) -> RunResult:
    method = "mixture" if model.config["model"] == "cgmvae" else "leiden"
    cluster(adata, resolution=resolution, seed=seed, method=method)
    adata.uns[KEY]["command"] = command or " ".join(sys.argv)
    colors = [k for k in [model.spec.label_key, *model.spec.batch_keys]
              if k and k in adata.obs.columns]
    result.plot = _plot_path(result.out, plot)
    _save_plot(adata, result.plot, colors)
    if model_p is not None:
        model.save(model_p)
    write_h5ad(adata, result.out)
    return result


def _save_plot(adata: ad.AnnData, path: Path, extra_colors: list[str]) -> None:
    """UMAP coloured by cluster and by the given obs columns, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    colors = [CLUSTER_KEY, *extra_colors]
    if "geovae_label" in adata.obs.columns:
        colors.append("geovae_label")
    fig = sc.pl.umap(adata, color=colors, show=False, return_fig=True, ncols=len(colors))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
