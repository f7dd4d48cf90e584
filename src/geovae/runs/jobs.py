"""File-level runs behind the CLI and the workflows: check every output location before
reading anything, read, compute, stage every output, then commit them in one step.

What geovae promises about files: it never overwrites its input, never deletes what it did
not write (a model directory replaces only a geovae model directory), and an interrupted or
failed run leaves either all of its new outputs or the old ones untouched, with no temporary
files (a killed run's temporaries are removed by the next run).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from geovae import _keys as K
from geovae.io.read import check_readable
from geovae.runs.plan import OutputPlan, RunResult, default_outputs, plot_path


def run_fit(input_path: str | os.PathLike, out: str | os.PathLike | None = None,
            model_dir: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
            resolution: float = 1.0, command: str | None = None,
            obs_columns: list[str] | tuple[str, ...] = (), **fit_kwargs: Any) -> RunResult:
    """Read ``input_path``, fit, cluster, plot; write OUT.h5ad, the plot and the model.

    ``obs_columns``: table columns that are metadata, not features (the batch and label
    columns always are)."""
    input_path = Path(input_path)
    default_out, default_model = default_outputs(input_path)
    out_p = Path(out) if out else default_out
    model_p = Path(model_dir) if model_dir else (default_model if not out else
                                                 out_p.with_name(out_p.name[:-5] + ".model"))
    plan = OutputPlan([input_path], out_p, plot_path(out_p, plot), model_p)
    plan.check()
    check_readable(input_path)
    from geovae.io.read import read
    from geovae.tools.fit import fit

    keys = [*(fit_kwargs.get("batch_key") or []), fit_kwargs.get("label_key")]
    with plan.lock():
        adata = read(input_path, obs_columns=obs_columns, keys=[k for k in keys if k])
        model = fit(adata, **fit_kwargs)
        result = RunResult(out=out_p, model_dir=model_p, plot=plan.plot)
        result.messages += model.notes
        hist = model.history
        if hist is not None and hist.stopped_early:
            result.messages.append(f"early stopping after epoch {len(hist.train)}; the weights "
                                   f"of the best validation epoch ({hist.best_epoch + 1}) "
                                   "were kept")
        method = "mixture" if K.CLUSTER_PROBS in adata.obsm else "leiden"
        _finish(adata, plan, method, resolution, fit_kwargs.get("seed", 0), command,
                [model.spec.label_key or "", *model.spec.batch_keys], model)
    return result


def run_embed(model_dir: str | os.PathLike, input_path: str | os.PathLike,
              out: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
              resolution: float = 1.0, device: str = "cpu", command: str | None = None,
              volume: bool = False, obs_columns: list[str] | tuple[str, ...] = ()
              ) -> RunResult:
    """Embed a new file with a saved model; cluster, plot and write OUT.h5ad."""
    from geovae.models import GeoVAE

    input_path = Path(input_path)
    out_p = Path(out) if out else default_outputs(input_path)[0]
    plan = OutputPlan([input_path, Path(model_dir)], out_p, plot_path(out_p, plot))
    plan.check()
    check_readable(input_path)
    model = GeoVAE.load(model_dir, device=device)
    from geovae.io.read import read
    from geovae.tools.fit import embed

    keys = [*model.spec.batch_keys, model.spec.label_key]
    with plan.lock():
        adata = read(input_path, obs_columns=obs_columns, keys=[k for k in keys if k])
        embed(adata, model, volume=volume)
        result = RunResult(out=out_p, plot=plan.plot)
        info = adata.uns[K.UNS]
        if info["n_missing_features"]:
            result.messages.append(f"{info['n_missing_features']} of the model's "
                                   f"{model.spec.n_features} features are missing from the "
                                   "input and were filled with zeros")
        if info["n_extra_features"]:
            result.messages.append(f"{info['n_extra_features']} input features unknown to the "
                                   "model were ignored")
        method = "mixture" if K.CLUSTER_PROBS in adata.obsm else "leiden"
        _finish(adata, plan, method, resolution, model.config.seed, command,
                [model.spec.label_key or "", *model.spec.batch_keys], None)
    return result


def run_cluster(input_path: str | os.PathLike, out: str | os.PathLike,
                use_rep: str = K.REP, resolution: float = 1.0, method: str = "leiden",
                plot: str | os.PathLike | None = None, seed: int = 0,
                command: str | None = None) -> RunResult:
    """Cluster an embedding already in a file; writes OUT.h5ad and a UMAP plot."""
    input_path = Path(input_path)
    out_p = Path(out)
    plan = OutputPlan([input_path], out_p, plot_path(out_p, plot))
    plan.check()
    check_readable(input_path)
    from geovae.io.read import read

    with plan.lock():
        adata = read(input_path)
        _finish(adata, plan, method, resolution, seed, command, [], None, use_rep=use_rep)
    return RunResult(out=out_p, plot=plan.plot)


def _finish(adata: Any, plan: OutputPlan, method: str, resolution: float, seed: int,
            command: str | None, colors: list[str], model: Any, use_rep: str = K.REP,
            umap: Any = None, extras: list[tuple[Path, Any]] | None = None) -> None:
    """Cluster (and UMAP, unless ``umap`` coordinates are given), then stage the plot, the
    model (with its reference cells), the h5ad and any ``extras`` (path, writer(tmp)) and
    commit them together."""
    from geovae.io.write import OutputSet
    from geovae.models.persistence import write_atlas, write_model_files
    from geovae.report.plot import save_figure, umap_figure
    from geovae.tools.cluster import cluster
    from geovae.tools.record import update_record

    cluster(adata, use_rep=use_rep, resolution=resolution, seed=seed, method=method,
            umap=umap is None)
    if umap is not None:
        adata.obsm[K.UMAP] = umap
    update_record(adata, command=command or " ".join(sys.argv))
    with OutputSet() as outputs:
        if plan.plot is not None:
            save_figure(umap_figure(adata, [c for c in colors if c]),
                        outputs.stage(plan.plot), plan.plot)
        if model is not None and plan.model_dir is not None:
            directory = outputs.stage(plan.model_dir, directory=True)
            write_model_files(model, directory)
            write_atlas(directory, getattr(model, "atlas", None) or reference_cells(model, adata),
                        seed)
        for path, writer in extras or []:
            writer(outputs.stage(path))
        adata.write_h5ad(outputs.stage(plan.out))
        outputs.commit()


def reference_cells(model: Any, adata: Any) -> dict[str, Any]:
    """The training cells a fitted model keeps for transfer: latent, label codes, UMAP and
    per-cell -ELBO (how well the model explains each cell)."""
    from geovae.tools.transfer import negative_elbo

    labels = model.prepared.labels if model.spec.label_key else None
    return {"latent": adata.obsm[K.REP], "labels": labels, "umap": adata.obsm.get(K.UMAP),
            "nelbo": negative_elbo(model, model.source())}


def run_simulate(out: str | os.PathLike, **kwargs: Any) -> RunResult:
    """Write simulated negative-binomial counts (`geovae.datasets.simulate_counts`)."""
    from geovae.datasets import simulate_counts

    return _write_dataset(Path(out), simulate_counts, kwargs)


def run_blobs(out: str | os.PathLike, **kwargs: Any) -> RunResult:
    """Write conditional Gaussian blobs (`geovae.datasets.make_blobs`)."""
    from geovae.datasets import make_blobs

    return _write_dataset(Path(out), make_blobs, kwargs)


def _write_dataset(out: Path, make: Any, kwargs: dict[str, Any]) -> RunResult:
    from geovae.io.write import OutputSet

    plan = OutputPlan([], out)
    plan.check()
    adata = make(**kwargs)
    with plan.lock(), OutputSet() as outputs:
        adata.write_h5ad(outputs.stage(out))
        outputs.commit()
    return RunResult(out=out, messages=[f"{adata.n_obs} cells x {adata.n_vars} features"])
