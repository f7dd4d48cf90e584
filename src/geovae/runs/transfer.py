"""``geovae transfer`` as a file job: query file in; query output, new model directory, and
(with ``reference``) a joint reference + query object and plot out. The reference's model
directory is an input and is never written."""

from __future__ import annotations

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


def run_transfer(model_dir: str | os.PathLike, query_path: str | os.PathLike,
                 out: str | os.PathLike | None = None,
                 new_model_dir: str | os.PathLike | None = None,
                 reference: str | os.PathLike | None = None,
                 plot: str | os.PathLike | None = None, resolution: float | str | None = None,
                 command: str | None = None, obs_columns: list[str] | tuple[str, ...] = (),
                 n_neighbors: int = 15, umap: bool = True,
                 metrics_json: str | os.PathLike | None = None,
                 backed: bool | None = None, names: Names | None = None,
                 umap_epochs: int | None = None, merge: float | str | None = None,
                 **transfer_kwargs: Any) -> RunResult:
    """Map the query file onto the model in ``model_dir``; see `geovae.tools.transfer`.
    ``n_neighbors`` is also the transfer's; with ``umap`` off there is no UMAP and no plot
    (the joint object is still written, without the joint plot); ``umap_epochs``: a computed
    UMAP's optimisation epochs (None: geovae's by size; 0: umap-learn's default). ``merge``:
    the clusters' merge threshold (`geovae.graph.merge.parse_merge`). ``backed``: read the
    query (and the reference output) from disk in chunks (None: automatic). ``names``: how
    notes name parameters (`geovae.runs.plan.RunResult.names`)."""
    from geovae.models import GeoVAE

    query_path = Path(query_path)
    check_graph(n_neighbors)
    resolution = parse_resolution(resolution)
    parse_merge(merge)
    out_p = Path(out) if out else default_outputs(query_path)[0]
    stem = out_p.name[: -len(".h5ad")]
    model_p = Path(new_model_dir) if new_model_dir else out_p.with_name(stem + ".model")
    inputs = [query_path, Path(model_dir), *([Path(reference)] if reference else [])]
    joint = out_p.with_name(stem + ".joint.h5ad") if reference else None
    joint_plot = out_p.with_name(stem + ".joint.png") if reference and umap else None
    plan = OutputPlan(inputs, out_p, plot_path(out_p, plot, umap), model_p,
                      extra=[("joint output", joint), ("joint plot", joint_plot)]
                      if reference else [],
                      metrics=Path(metrics_json) if metrics_json else None,
                      model_dir_param="new_model_dir")
    plan.check()
    check_readable(query_path)
    if reference:
        check_readable(reference)
    model = GeoVAE.load(model_dir)
    from geovae.tools.transfer import transfer

    job = Job("transfer", query_path, command)
    keys = [*model.spec.batch_keys, transfer_kwargs.get("label_key"),
            transfer_kwargs.get("eval_key")]
    from geovae.data import check_names
    from geovae.runs.jobs import resolve_backed

    backed = resolve_backed(backed, query_path, model.spec.layer)
    with plan.lock():
        query = job.read(query_path, obs_columns=obs_columns, keys=[k for k in keys if k],
                         backed=backed, check=lambda a: check_names(
                             a, batch_keys=transfer_kwargs.get("batch_key")
                             or model.spec.batch_keys, label_key=transfer_kwargs.get(
                                 "label_key"), eval_key=transfer_kwargs.get("eval_key")))
        ref = _geovae_umap(job.read(Path(reference), backed=backed)) if reference else None
        log.info(f"transfer onto the model in {model_dir}: {model.name}, "
                 f"{model.config.latent} latent, {model.spec.n_features} features; freeze "
                 f"{transfer_kwargs.get('freeze', 'all')}, device "
                 f"{transfer_kwargs.get('device', 'auto')}")
        own_umap = query.obsm.pop(K.UMAP, None)  # the input's own UMAP: finish keeps it
        with job.timings.phase("train"):
            new = transfer(query, model, reference=ref, n_neighbors=n_neighbors,
                           **transfer_kwargs)
        placed = query.obsm.pop(K.UMAP, None)  # on the reference's axes: finish writes it
        if own_umap is not None:
            query.obsm[K.UMAP] = own_umap
        result = RunResult(out=out_p, plot=plan.plot, model_dir=model_p, metrics=plan.metrics,
                           names=names)
        if ref is not None:  # the chain of commands goes on from the reference's
            from geovae.tools.record import command_chain, update_record

            update_record(query, commands=command_chain(ref.uns.get(K.UNS)) or None)
        info = query.uns[K.UNS]["transfer"]
        note(result, *[str(n) for n in query.uns[K.UNS].get("notes", [])])
        note(result, _summary(info))
        job.device = str(new.device)
        placed = placed if umap else None
        if umap and placed is None:
            note(result, "the query's UMAP is computed on the query alone: its axes are not "
                         "the reference's")
        extras = []
        if ref is not None:
            both = joint_object(ref, query, model.spec.label_key, model.spec.batch_keys, placed)
            extras = [(joint, both.write_h5ad)]
            if joint_plot is not None and K.UMAP in both.obsm:
                title = f"reference {Path(reference).name} + query"
                extras.append((joint_plot, lambda tmp: _joint_plot(both, tmp, joint_plot,
                                                                   query, title)))
                log.info(f"joint reference + query output: {joint} and {joint_plot}")
            else:
                note(result, Note(f"joint reference + query output: '{joint}'; no joint plot ("
                                  + ("{umap=False})" if not umap
                                     else "the reference has no UMAP)")))
        method = "mixture" if K.CLUSTER_PROBS in query.obsm else "leiden"
        label = transfer_kwargs.get("eval_key") or transfer_kwargs.get("label_key")
        graph = Graph(method=method, resolution=resolution, n_neighbors=n_neighbors, umap=umap,
                      merge=merge, umap_epochs=umap_epochs, seed=transfer_kwargs.get("seed", 0),
                      label_key=label, colors=[*model.spec.batch_keys])
        finish(query, plan, graph, job, result, model=new, umap=placed, extras=extras)
    return result


def _geovae_umap(ref: Any) -> Any:
    """The reference output as transfer reads it: geovae's UMAP where ``obsm['X_umap']`` is
    (a fit output keeps a user's own X_umap and has geovae's in ``X_geovae_umap``); in memory
    only, the reference file is never written."""
    if K.UMAP_GEOVAE in ref.obsm:
        ref.obsm[K.UMAP] = ref.obsm[K.UMAP_GEOVAE]
    return ref


def _summary(info: dict[str, Any]) -> str:
    parts = [f"{info['n_features_matched']} features matched"]
    if info["n_missing_features"]:
        parts.append(f"{info['n_missing_features']} missing (zero-filled)")
    added = {k: [str(c) for c in v] for k, v in info["new_categories"].items() if len(v)}
    if added:
        parts.append(f"new categories {added} trained ({info['n_trainable_weights']} weights, "
                     f"{info['epochs_run']} epochs)")
    if "fraction_unknown" in info:
        parts.append(f"{info['fraction_unknown']:.1%} called unknown")
    if "accuracy" in info:
        parts.append(f"accuracy {info['accuracy']:.3f}, macro-F1 {info['macro_f1']:.3f}")
    if "novel_auroc" in info:
        parts.append(f"unseen-type AUROC {info['novel_auroc']:.3f}")
    if "mixing" in info:
        mix = info["mixing"]
        parts.append(f"mixing with the reference (same labels, {mix['labels']}): iLISI "
                     f"{mix['ilisi_per_label']:.2f}, kBET {mix['kbet']:.2f} (1: fully mixed)")
    return "transfer: " + "; ".join(parts)


def joint_object(ref: Any, query: Any, label_key: str | None, batch_keys: list[str],
                 query_umap: Any = None) -> Any:
    """Reference and query cells in one AnnData (no X): source, label, condition columns and
    the shared latent and UMAP (``query_umap``: the query's place on the reference's UMAP;
    without it the joint object has no UMAP)."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    def part(a: Any, source: str, label: str | None, umap: Any) -> Any:
        obs = pd.DataFrame(index=a.obs_names.astype(str))
        obs[K.SOURCE] = source
        obs["label"] = a.obs[label].astype(str).to_numpy() if label in a.obs else "none"
        for key in batch_keys:
            obs[key] = a.obs[key].astype(str).to_numpy() if key in a.obs else "none"
        obsm = {K.REP: np.asarray(a.obsm[K.REP])}
        if umap is not None:
            obsm[K.UMAP] = np.asarray(umap)
        return ad.AnnData(obs=obs, obsm=obsm)

    ref_umap = ref.obsm.get(K.UMAP) if query_umap is not None else None
    both = ad.concat([part(ref, "reference", label_key, ref_umap),
                      part(query, "query", K.LABEL, query_umap)],
                     join="inner", index_unique="-")
    for col in both.obs.columns:
        both.obs[col] = both.obs[col].astype("category")
    return both


def _joint_plot(both: Any, tmp: Path, final: Path, query: Any, title: str) -> None:
    """UMAP of reference and query together: by source, by label, by condition; titled
    with both files, the model and the query's scores (`geovae.report.plot.headline`)."""
    from geovae.report.plot import headline, save_figure, umap_figure

    columns = [str(c) for c in both.obs.columns]
    batches = [c for c in columns if c not in (K.SOURCE, "label")]
    save_figure(umap_figure(both, columns, label_key="label", batch_keys=batches,
                            title=f"{title} {headline(query)}"), tmp, final)


__all__ = ["joint_object", "run_transfer"]
