"""File-level runs behind the CLI and the workflows: check every output location before
reading anything, read, compute, stage every output, then commit them in one step.

What geovae promises about files: it never overwrites its input, never deletes what it did
not write (a model directory replaces only a geovae model directory), and an interrupted or
failed run leaves either all of its new outputs or the old ones untouched, with no temporary
files (a killed run's temporaries are removed by the next run).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geovae import _keys as K
from geovae.errors import Note
from geovae.graph.merge import parse_merge
from geovae.io.read import check_readable
from geovae.runs.finish import Graph, Job, finish, note
from geovae.runs.plan import OutputPlan, RunResult, check_graph, default_outputs, plot_path
from geovae.tools.resolution import parse_resolution

if TYPE_CHECKING:
    from geovae.runs.plan import Names

log = logging.getLogger("geovae.runs")


def run_fit(input_path: str | os.PathLike, out: str | os.PathLike | None = None,
            model_dir: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
            resolution: float | str | None = None, command: str | None = None,
            obs_columns: list[str] | tuple[str, ...] = (), n_neighbors: int = 15,
            umap: bool = True, metrics_json: str | os.PathLike | None = None,
            backed: bool | None = None, names: Names | None = None,
            umap_epochs: int | None = None, merge: float | str | None = None,
            **fit_kwargs: Any) -> RunResult:
    """Read ``input_path``, fit, cluster, plot; write OUT.h5ad, the plot and the model (and
    with ``metrics_json`` the run's metrics).

    ``obs_columns``: table columns that are metadata, not features (the batch and label
    columns always are). ``n_neighbors``, ``umap``: the kNN graph and whether to compute a
    UMAP (and the plot); ``umap_epochs`` its optimisation epochs (None: geovae's by size,
    0: umap-learn's default; `geovae.tools.cluster.cluster`).
    ``merge``: the Leiden clusters' merge threshold, ``"off"`` or None for the default
    (`geovae.graph.merge.parse_merge`; the same in `run_embed`, `run_cluster`). ``backed``:
    train from the ``.h5ad`` on disk without loading X (None: automatic, see `resolve_backed`).
    ``names``: how notes name parameters (`RunResult.names`; the same in `run_embed`,
    `run_cluster`)."""
    input_path = Path(input_path)
    resolution = parse_resolution(resolution)
    parse_merge(merge)
    plan = fit_plan(input_path, out, model_dir, plot, umap, metrics_json, n_neighbors)
    out_p, model_p = plan.out, plan.model_dir
    from geovae.io.read import input_format
    from geovae.runs.describe import counts_hint, describe_fit
    from geovae.tools.fit import check_fit_options, default_latent_dim, fit

    fit_kwargs["latent_dim"] = default_latent_dim(fit_kwargs.get("latent_dim"),
                                                  input_format(input_path))
    check_fit_options(**fit_kwargs)  # before any data is read
    from geovae.tools.record import update_record
    from geovae.training.distributed import is_main

    job = Job("fit", input_path, command)
    keys = [*(fit_kwargs.get("batch_key") or []), fit_kwargs.get("label_key")]
    backed = resolve_backed(backed, input_path, fit_kwargs.get("layer"))
    main = is_main()  # under torchrun every rank trains; rank 0 alone locks and writes
    with plan.lock() if main else contextlib.nullcontext():
        adata = job.read(input_path, obs_columns=obs_columns, keys=[k for k in keys if k],
                         backed=backed, check=lambda a: _check_fit_input(a, fit_kwargs))
        result = RunResult(out=out_p, model_dir=model_p, plot=plan.plot, metrics=plan.metrics,
                           names=names)
        hint = counts_hint(adata, fit_kwargs.get("layer"), fit_kwargs.get("likelihood", "auto"))
        if hint:
            log.warning(hint)
        plan_lines = describe_fit(adata, fit_kwargs)
        for line in plan_lines:
            log.info(line)
        with job.timings.phase("train"):
            model = fit(adata, **fit_kwargs)
        if not main:
            return result
        said = any("likelihood auto →" in line for line in plan_lines)
        for msg in model.notes:  # the plan's lines named the likelihood already
            if said and msg.startswith("likelihood auto"):
                result.messages.append(msg)
            else:
                note(result, msg)
        held = adata.uns[K.UNS].get("heldout_loglik")
        if isinstance(held, dict) and held.get("n_cells"):
            from geovae.tools.evaluate import describe_heldout

            note(result, describe_heldout(held))
        if hint:
            hint = result.say(hint)
            result.messages.append(hint)
            update_record(adata, notes=[*adata.uns[K.UNS].get("notes", []), hint])
        hist = model.history
        if hist is not None and hist.stopped_early:
            note(result, f"early stopping after epoch {len(hist.train)}; the weights of the "
                         f"best validation epoch ({hist.best_epoch + 1}) were kept")
        job.device, job.history = model.train_params.get("device"), hist
        method = "mixture" if K.CLUSTER_PROBS in adata.obsm else "leiden"
        graph = Graph(method=method, resolution=resolution, n_neighbors=n_neighbors, umap=umap,
                      merge=merge,
                      umap_epochs=umap_epochs,
                      seed=fit_kwargs.get("seed", 0), label_key=model.spec.label_key,
                      colors=[model.spec.label_key or "", *model.spec.batch_keys])
        finish(adata, plan, graph, job, result, model=model)
    return result


def fit_plan(input_path: Path, out: str | os.PathLike | None = None,
             model_dir: str | os.PathLike | None = None,
             plot: str | os.PathLike | None = None, umap: bool = True,
             metrics_json: str | os.PathLike | None = None, n_neighbors: int = 15
             ) -> OutputPlan:
    """The outputs of `run_fit`, checked (and the input readable) before any data is read."""
    check_graph(n_neighbors)
    default_out, default_model = default_outputs(input_path)
    out_p = Path(out) if out else default_out
    model_p = Path(model_dir) if model_dir else (default_model if not out else
                                                 out_p.with_name(out_p.name[:-5] + ".model"))
    plan = OutputPlan([input_path], out_p, plot_path(out_p, plot, umap), model_p,
                      metrics=Path(metrics_json) if metrics_json else None)
    plan.check()
    check_readable(input_path)
    return plan


def run_embed(model_dir: str | os.PathLike, input_path: str | os.PathLike,
              out: str | os.PathLike | None = None, plot: str | os.PathLike | None = None,
              resolution: float | str | None = None, device: str = "cpu",
              command: str | None = None,
              volume: bool = False, obs_columns: list[str] | tuple[str, ...] = (),
              n_neighbors: int = 15, umap: bool = True, label_key: str | None = None,
              metrics_json: str | os.PathLike | None = None,
              backed: bool | None = None, threads: int | None = 0,
              names: Names | None = None, umap_epochs: int | None = None,
              merge: float | str | None = None) -> RunResult:
    """Embed a new file with a saved model; cluster, plot and write OUT.h5ad. ``label_key``:
    labels to score the clusters against (default: the model's, where the input has it).
    ``backed``: read the ``.h5ad`` from disk in chunks (None: automatic). ``threads``: torch's
    CPU threads (`geovae.embed`)."""
    from geovae.models import GeoVAE

    input_path = Path(input_path)
    check_graph(n_neighbors)
    resolution = parse_resolution(resolution)
    parse_merge(merge)
    out_p = Path(out) if out else default_outputs(input_path)[0]
    plan = OutputPlan([input_path, Path(model_dir)], out_p, plot_path(out_p, plot, umap),
                      metrics=Path(metrics_json) if metrics_json else None)
    plan.check()
    check_readable(input_path)
    model = GeoVAE.load(model_dir, device=device)
    from geovae.tools.fit import embed

    job = Job("embed", input_path, command, device=str(model.device))
    keys = [*model.spec.batch_keys, model.spec.label_key, label_key]
    backed = resolve_backed(backed, input_path, model.spec.layer)
    with plan.lock():
        adata = job.read(input_path, obs_columns=obs_columns, keys=[k for k in keys if k],
                         check=lambda a: _check_embed_input(a, model.spec.batch_keys,
                                                            label_key), backed=backed)
        log.info(f"embedding with the model in {model_dir}: {model.name}, "
                 f"{model.config.latent} latent (d={model.config.latent_dim}), "
                 f"{model.spec.likelihood}, {model.spec.n_features} features from "
                 f"{model.spec.layer or 'X'}; {job.device}")
        with job.timings.phase("latent"):
            embed(adata, model, volume=volume, threads=threads)
        result = RunResult(out=out_p, plot=plan.plot, metrics=plan.metrics, names=names)
        info = adata.uns[K.UNS]
        if info["n_missing_features"]:
            note(result, f"{info['n_missing_features']} of the model's "
                         f"{model.spec.n_features} features are missing from the input and "
                         "were filled with zeros")
        if info["n_extra_features"]:
            note(result, f"{info['n_extra_features']} input features unknown to the model "
                         "were ignored")
        method = "mixture" if K.CLUSTER_PROBS in adata.obsm else "leiden"
        labels = label_key or model.spec.label_key
        graph = Graph(method=method, resolution=resolution, n_neighbors=n_neighbors, umap=umap,
                      merge=merge,
                      umap_epochs=umap_epochs,
                      seed=model.config.seed, label_key=labels,
                      colors=[labels or "", *model.spec.batch_keys])
        finish(adata, plan, graph, job, result)
    return result


def run_cluster(input_path: str | os.PathLike, out: str | os.PathLike,
                use_rep: str = K.REP, resolution: float | str | None = None, method: str = "leiden",
                plot: str | os.PathLike | None = None, seed: int = 0,
                command: str | None = None, n_neighbors: int = 15, umap: bool = True,
                label_key: str | None = None, metrics_json: str | os.PathLike | None = None,
                names: Names | None = None, umap_epochs: int | None = None,
                merge: float | str | None = None) -> RunResult:
    """Cluster an embedding already in a file; writes OUT.h5ad and a UMAP plot.
    ``label_key``: labels to colour and to score the clusters against."""
    input_path = Path(input_path)
    check_graph(n_neighbors)
    resolution = parse_resolution(resolution)
    parse_merge(merge)
    out_p = Path(out)
    plan = OutputPlan([input_path], out_p, plot_path(out_p, plot, umap),
                      metrics=Path(metrics_json) if metrics_json else None)
    plan.check()
    check_readable(input_path)

    job = Job("cluster", input_path, command)
    with plan.lock():
        adata = job.read(input_path, check=lambda a: _check_cluster_input(a, use_rep,
                                                                          label_key))
        result = RunResult(out=out_p, plot=plan.plot, metrics=plan.metrics, names=names)
        graph = Graph(method=method, resolution=resolution, n_neighbors=n_neighbors, umap=umap,
                      merge=merge,
                      umap_epochs=umap_epochs,
                      seed=seed, use_rep=use_rep, label_key=label_key, colors=[label_key or ""])
        finish(adata, plan, graph, job, result)
    return result


def resolve_backed(backed: bool | None, path: Path, layer: str | None) -> bool:
    """``backed`` as given, or automatic (None): an ``.h5ad`` whose matrix would take more
    than half the available memory in memory (`geovae.data.h5.should_back`)."""
    from geovae.io.read import input_format

    if backed is not None:
        return backed
    if input_format(path) != "h5ad" or str(path).lower().endswith(".gz"):
        return False
    from geovae.data.h5 import should_back

    if should_back(path, layer):
        log.info(Note(f"'{path}' is large for this machine's free memory: reading it backed "
                      "(from disk in chunks); {backed=False} to load it"))
        return True
    return False


def _check_fit_input(adata: Any, options: dict[str, Any]) -> None:
    """The layer and obs columns a fit names are in the file (before anything is logged)."""
    from geovae.data import check_names

    check_names(adata, options.get("layer"), options.get("batch_key"),
                options.get("label_key"))


def _check_embed_input(adata: Any, batch_keys: list[str], label_key: str | None) -> None:
    """The model's covariate columns and a label column given are in the file (before
    anything is logged)."""
    from geovae.data import check_names

    check_names(adata, batch_keys=batch_keys, label_key=label_key)


def _check_labels(adata: Any, label_key: str | None) -> None:
    """A label column given to score the clusters is in the file (before any work)."""
    from geovae.data import check_names

    check_names(adata, label_key=label_key)


def _check_cluster_input(adata: Any, use_rep: str, label_key: str | None) -> None:
    """The embedding and the label column are in the file (before any work)."""
    from geovae.data.checks import did_you_mean
    from geovae.errors import OptionError

    if use_rep not in adata.obsm:
        avail = ", ".join(adata.obsm.keys()) or "none"
        raise OptionError(f"representation '{use_rep}' not in obsm (available: {avail}); "
                          "run `geovae fit` first or pass {opt}"
                          + did_you_mean(use_rep, adata.obsm.keys()), param="use_rep")
    _check_labels(adata, label_key)


def run_simulate(out: str | os.PathLike, **kwargs: Any) -> RunResult:
    """Write simulated negative-binomial counts (`geovae.datasets.simulate_counts`)."""
    from geovae.datasets import simulate_counts

    return _write_dataset(Path(out), simulate_counts, kwargs)


def run_blobs(out: str | os.PathLike, **kwargs: Any) -> RunResult:
    """Write conditional Gaussian blobs (`geovae.datasets.make_blobs`)."""
    from geovae.datasets import make_blobs

    return _write_dataset(Path(out), make_blobs, kwargs)


def _write_dataset(out: Path, make: Any, kwargs: dict[str, Any]) -> RunResult:
    from geovae.io.write import OutputSet, check_space, h5ad_bytes

    plan = OutputPlan([], out)
    plan.check()
    adata = make(**kwargs)
    check_space([(out, h5ad_bytes(adata))])
    with plan.lock(), OutputSet() as outputs:
        adata.write_h5ad(outputs.stage(out))
        outputs.commit()
    result = RunResult(out=out)
    note(result, f"{adata.n_obs} cells x {adata.n_vars} features")
    return result


__all__ = ["fit_plan", "resolve_backed", "run_blobs", "run_cluster",
           "run_embed", "run_fit",
           "run_simulate"]
