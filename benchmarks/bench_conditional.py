"""Conditional c*GMΔVAE: is the latent corrected for the condition, and are the types kept?

Run (one thread; on a long run, from a separate checkout of the commit measured, e.g. a git
worktree, so edits to this tree meanwhile do not leak in)::

    OMP_NUM_THREADS=1 python benchmarks/bench_conditional.py \
        --data blobs sim --configs old new new_per_cell vae --seeds 10 11 12 13 14 \
        --json out.jsonl
    python benchmarks/bench_conditional.py --summary out.jsonl     # tables + paired tests

Data (condition = batch_key, type = truth, never shown to the models):

* ``blobs``: `geovae.datasets.make_blobs` (2000 cells, 50 features, 5 blobs, 3 conditions,
  condition shift 2 > blob scale 1), Gaussian likelihood, latent_dim 4, K = 10;
* ``sim``: `geovae.datasets.simulate_counts` with strong conditions (2000 cells, 500 genes,
  5 types, 3 conditions, condition_effect 1.5), NB, latent_dim 10, K = 10;
* ``kang``: ``data/kang_counts.h5ad`` (3000 PBMCs x 2000 genes, ``stim`` CTRL / STIM,
  10 ``seurat_annotations``), NB, latent_dim 10, K = 15.

K is an upper bound on the number of types (5, 5, 10).

Configurations (``model_options`` of ``model="cgmvae"``; all use the batch key):

* ``old``: geovae 0.1.0 (``condition_prior``, per-cell d, alpha 1, q(y|z) at the posterior
  mean);
* ``new``: today's defaults (covariates out of the prior, global weights q(pi) = Dir(gamma),
  alpha = 1/K, predictive over 32 draws of z);
* ``new_per_cell``: new with the thesis's per-cell d (alpha 1 by default);
* ``vae``: the plain VAE (``model="vae"``) with the same batch key;
* hyperbolic latents only (``--latent hyperbolic``): ``lorentz`` is ``new`` with the decoder
  reading z's Lorentz coordinates (``decoder_input="lorentz"``, geovae <= 0.2.0 dev) instead
  of its tangent coordinates at the origin; ``lorentz_prior`` adds the covariates to the
  prior, the hyperbolic default before the tangent input; ``vae_lorentz`` is ``vae`` with the
  Lorentz input.

With ``--latent hyperbolic`` the neighbour graph (same-condition share, iLISI, kBET) uses
geodesic distances, and ASW and k-means read log_0(z), z's coordinates in the tangent space
at the origin (scib-metrics' silhouettes and k-means are Euclidean).

Metrics on ``obsm["X_geovae"]`` with scib-metrics: mixing — iLISI (scib's scaled
[0, 1] value), kBET (per label), batch ASW; conservation — cell-type ASW, NMI and ARI of
k-means on the latent (``nmi_ari_cluster_labels_kmeans``); plus the same-condition fraction
of each cell's 15 nearest neighbours (chance = sum of squared condition shares), the ARI of
the mixture's argmax (``obsm["geovae_cluster_probs"]``), the components in use (argmax of
>= 0.5 % of cells, and weight >= 0.5 %) and the mean ``obs["geovae_cluster_entropy"]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, add_record_options, emit, runs_wanted  # noqa: E402

CONFIGS: dict[str, dict[str, Any]] = {
    "old": {"condition_prior": True, "mixture_weights": "per_cell", "dirichlet_alpha": 1.0,
            "cluster_samples": 0},
    "new": {},
    "new_per_cell": {"mixture_weights": "per_cell"},
    "vae": {},
    "lorentz": {"decoder_input": "lorentz"},
    "lorentz_prior": {"decoder_input": "lorentz", "condition_prior": True},
    "vae_lorentz": {"decoder_input": "lorentz"},
}
#: options of CONFIGS that belong to the latent, not the model
LATENT_OPTIONS = ("decoder_input",)
METRICS = ("same_condition", "ilisi", "kbet", "batch_asw", "type_asw", "kmeans_nmi",
           "kmeans_ari", "mixture_ari", "n_argmax", "n_used", "entropy", "seconds")


def load(name: str, seed: int) -> tuple[Any, dict[str, Any], str, str]:
    """(adata, fit kwargs, condition key, type key)."""
    import anndata as ad

    from geovae.datasets import make_blobs, simulate_counts

    if name == "blobs":
        a = make_blobs(n_cells=2000, n_conditions=3, seed=seed)
        return a, {"likelihood": "gaussian", "latent_dim": 4, "n_clusters": 10,
                   "epochs": 40}, "condition", "blob"
    if name == "sim":
        a = simulate_counts(n_cells=2000, n_genes=500, n_types=5, n_conditions=3,
                            condition_effect=1.5, seed=seed)
        return a, {"likelihood": "nb", "latent_dim": 10, "n_clusters": 10,
                   "epochs": 60}, "condition", "cell_type"
    if name == "kang":
        a = ad.read_h5ad(ROOT / "data" / "kang_counts.h5ad")
        return a, {"likelihood": "nb", "latent_dim": 10, "n_clusters": 15,
                   "epochs": 40}, "stim", "seurat_annotations"
    raise ValueError(name)


def neighbours(z: np.ndarray, k: int, latent: str = "euclidean"
               ) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices) of each cell's k nearest neighbours, itself included first:
    Euclidean, or geodesic on the hyperboloid (exact, all pairs)."""
    from sklearn.neighbors import NearestNeighbors

    if latent != "hyperbolic":
        return NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z)
    inner = np.outer(z[:, 0], z[:, 0]) - z[:, 1:] @ z[:, 1:].T  # -<a, b>_L
    dist = np.arccosh(np.clip(inner, 1.0, None))
    np.fill_diagonal(dist, -1.0)  # itself first, as sklearn returns it
    idx = np.argsort(dist, axis=1)[:, :k]
    dist = np.take_along_axis(dist, idx, axis=1)
    dist[:, 0] = 0.0
    return dist, idx


def tangent_coordinates(z: np.ndarray) -> np.ndarray:
    """log_0(z) of hyperboloid points: asinh(|z_s|) z_s / |z_s| (z_s = spatial part)."""
    s = z[:, 1:]
    norm = np.linalg.norm(s, axis=1, keepdims=True)
    return s * np.where(norm > 0, np.arcsinh(norm) / np.where(norm > 0, norm, 1.0), 1.0)


def same_condition_fraction(z: np.ndarray, cond: np.ndarray, k: int = 15,
                            latent: str = "euclidean") -> float:
    """Mean share of each cell's k nearest neighbours (itself excluded) in its condition."""
    idx = neighbours(z, k + 1, latent)[1]
    return float((cond[idx[:, 1:]] == cond[:, None]).mean())


def scib_scores(z: np.ndarray, cond: np.ndarray, types: np.ndarray,
                latent: str = "euclidean") -> dict[str, float]:
    """scib-metrics' mixing and conservation scores."""
    import scib_metrics
    from scib_metrics.nearest_neighbors import NeighborsResults

    dist, idx = neighbours(z, 90, latent)
    nn = NeighborsResults(indices=idx, distances=dist)
    if latent == "hyperbolic":
        z = tangent_coordinates(z)
    out = {"ilisi": float(scib_metrics.ilisi_knn(nn, cond)),
           "batch_asw": float(scib_metrics.silhouette_batch(z, types, cond)),
           "type_asw": float(scib_metrics.silhouette_label(z, types))}
    try:
        out["kbet"] = float(scib_metrics.kbet_per_label(nn, cond, types))
    except Exception as exc:  # kBET fails on tiny or degenerate groups
        out["kbet"] = float("nan")
        print("kBET failed:", exc, file=sys.stderr)
    out.update({f"kmeans_{k}": float(v) for k, v in
                scib_metrics.nmi_ari_cluster_labels_kmeans(z, types).items()})
    return out


def run(data: str, config: str, seed: int, epochs: int | None = None,
        data_seed: int | None = None, latent: str = "euclidean") -> dict[str, Any]:
    """Fit one configuration (model seed ``seed``) on the data drawn with ``data_seed``
    (default ``seed``) and score it."""
    from sklearn.metrics import adjusted_rand_score

    import geovae

    data_seed = seed if data_seed is None else data_seed
    adata, kw, ckey, tkey = load(data, data_seed)
    kw = dict(kw)
    n_clusters = kw.pop("n_clusters")
    default_epochs = kw.pop("epochs")
    ep = default_epochs if epochs is None else epochs
    options = dict(CONFIGS[config])
    latent_options = {k: options.pop(k) for k in LATENT_OPTIONS if k in options}
    common = {"batch_key": ckey, "epochs": ep, "progress": False, "seed": seed,
              "device": "cpu", "heldout_samples": 0, "latent": latent,
              "latent_options": latent_options, **kw}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config.startswith("vae"):
            geovae.fit(adata, model="vae", **common)
        else:
            opts = {"n_clusters": n_clusters, **options}
            geovae.fit(adata, model="cgmvae", model_options=opts, **common)
    seconds = time.perf_counter() - t0
    z = np.asarray(adata.obsm["X_geovae"], dtype=np.float64)
    cond = adata.obs[ckey].astype("category").cat.codes.to_numpy()
    types = adata.obs[tkey].astype("category").cat.codes.to_numpy()
    rec: dict[str, Any] = {"data": data, "config": config, "seed": seed, "latent": latent,
                           "data_seed": data_seed, "epochs": ep,
                           "epochs_run": int(adata.uns["geovae"]["params"]["epochs_run"]),
                           "seconds": round(seconds, 1),
                           "same_condition": same_condition_fraction(z, cond, latent=latent),
                           "chance": float(((np.bincount(cond) / len(cond)) ** 2).sum())}
    if "geovae_cluster_probs" in adata.obsm:
        probs = adata.obsm["geovae_cluster_probs"]
        info = adata.uns["geovae"]
        rec.update(mixture_ari=float(adjusted_rand_score(types, probs.argmax(1))),
                   n_used=int(info["n_components_used"]),
                   n_argmax=int(info["n_components_argmax"]),
                   entropy=float(np.mean(adata.obs["geovae_cluster_entropy"])),
                   weights_model=str(info["weights_model"]),
                   cluster_probs=str(info["cluster_probs"]["method"]))
    t1 = time.perf_counter()
    rec.update(scib_scores(z, cond, types, latent))
    rec["metric_seconds"] = round(time.perf_counter() - t1, 1)
    return rec


def summarise(path: Path) -> None:
    """Markdown tables (mean ± sd, ddof = 1) and paired tests by seed from a JSON-lines file."""
    from paired_stats import paired, sd, table

    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for data, latent in dict.fromkeys((r["data"], r.get("latent", "euclidean"))
                                      for r in recs):
        rs = [r for r in recs if r["data"] == data and r.get("latent", "euclidean") == latent]
        configs = list(dict.fromkeys(r["config"] for r in rs))
        seeds = sorted({r["seed"] for r in rs})
        chance = np.mean([r["chance"] for r in rs])
        print(f"\n#### {data}, {latent} latent ({len(seeds)} seeds: {seeds}; epochs "
              f"{sorted({r['epochs'] for r in rs})}; same-condition chance {chance:.3f})\n")
        print("| config | " + " | ".join(METRICS) + " |")
        print("|---|" + "---|" * len(METRICS))
        for c in configs:
            cells = []
            for m in METRICS:
                v = [r.get(m, np.nan) for r in rs if r["config"] == c]
                v = np.asarray(v, dtype=float)
                cells.append("–" if not np.isfinite(v).any()
                             else f"{np.nanmean(v):.3g} ± {sd(v):.2g}")
            n = sum(r["config"] == c for r in rs)
            print(f"| {c} (n={n}) | " + " | ".join(cells) + " |")
        rows = []
        for a, b in (("new", "old"), ("new", "vae"), ("new", "new_per_cell"),
                     ("new", "lorentz"), ("new", "lorentz_prior"), ("vae", "vae_lorentz")):
            if a not in configs or b not in configs:
                continue
            for m in METRICS[:-1]:
                pa = {r["seed"]: r.get(m, np.nan) for r in rs if r["config"] == a}
                pb = {r["seed"]: r.get(m, np.nan) for r in rs if r["config"] == b}
                common = sorted(set(pa) & set(pb))
                x = [pa[s] for s in common]
                y = [pb[s] for s in common]
                if np.isfinite(np.asarray(x, float)).any() and \
                        np.isfinite(np.asarray(y, float)).any():
                    rows.append((f"{data}: {m}", a, b, paired(x, y)))
        print()
        print("\n".join(table(rows)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=["blobs", "sim", "kang"])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[10, 11, 12, 13, 14])
    ap.add_argument("--epochs", type=int, default=None, help="override every data set's")
    ap.add_argument("--latent", default="euclidean", choices=["euclidean", "hyperbolic"])
    ap.add_argument("--data-seed", type=int, default=None,
                    help="one data draw for every model seed (scib-metrics' JAX functions "
                         "then compile once: kBET / batch ASW recompile per label-group size)")
    ap.add_argument("--jax-cache", type=Path, default=None,
                    help="persistent JAX compilation cache directory")
    add_record_options(ap)
    args = ap.parse_args()
    if not runs_wanted(args, summarise):
        return
    if args.jax_cache:
        import jax

        jax.config.update("jax_compilation_cache_dir", str(args.jax_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    for data in args.data:
        for seed in args.seeds:
            for config in args.configs:
                rec = run(data, config, seed, args.epochs, args.data_seed, args.latent)
                emit(rec, args.json)


if __name__ == "__main__":
    main()
