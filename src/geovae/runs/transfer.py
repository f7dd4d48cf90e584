"""``geovae transfer`` as a file job: query file in; query output, new model directory, and
(with --reference) a joint reference + query object and plot out. The reference's model
directory is an input and is never written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from geovae import _keys as K
from geovae.io.read import check_readable
from geovae.runs.jobs import _finish
from geovae.runs.plan import OutputPlan, RunResult, default_outputs, plot_path


def run_transfer(model_dir: str | os.PathLike, query_path: str | os.PathLike,
                 out: str | os.PathLike | None = None,
                 new_model_dir: str | os.PathLike | None = None,
                 reference: str | os.PathLike | None = None,
                 plot: str | os.PathLike | None = None, resolution: float = 1.0,
                 command: str | None = None, obs_columns: list[str] | tuple[str, ...] = (),
                 **transfer_kwargs: Any) -> RunResult:
    """Map the query file onto the model in ``model_dir``; see `geovae.tools.transfer`."""
    from geovae.models import GeoVAE

    query_path = Path(query_path)
    out_p = Path(out) if out else default_outputs(query_path)[0]
    stem = out_p.name[: -len(".h5ad")]
    model_p = Path(new_model_dir) if new_model_dir else out_p.with_name(stem + ".model")
    inputs = [query_path, Path(model_dir), *([Path(reference)] if reference else [])]
    joint = out_p.with_name(stem + ".joint.h5ad") if reference else None
    joint_plot = out_p.with_name(stem + ".joint.png") if reference else None
    plan = OutputPlan(inputs, out_p, plot_path(out_p, plot), model_p,
                      extra=[("joint output", joint), ("joint plot", joint_plot)]
                      if reference else [])
    plan.check()
    check_readable(query_path)
    if reference:
        check_readable(reference)
    model = GeoVAE.load(model_dir)
    from geovae.io.read import read
    from geovae.tools.transfer import transfer

    keys = [*model.spec.batch_keys, transfer_kwargs.get("label_key"),
            transfer_kwargs.get("eval_key")]
    with plan.lock():
        query = read(query_path, obs_columns=obs_columns, keys=[k for k in keys if k])
        ref = read(reference) if reference else None
        new = transfer(query, model, reference=ref, **transfer_kwargs)
        result = RunResult(out=out_p, plot=plan.plot, model_dir=model_p)
        info = query.uns[K.UNS]["transfer"]
        result.messages += list(query.uns[K.UNS].get("notes", []))
        result.messages.append(_summary(info))
        extras = []
        if new.transfer_umap is not None:
            query.obsm[K.UMAP] = new.transfer_umap
        if ref is not None:
            both = joint_object(ref, query, model.spec.label_key, model.spec.batch_keys)
            extras = [(joint, both.write_h5ad),
                      (joint_plot, lambda tmp: _joint_plot(both, tmp, joint_plot))]
            result.messages.append(f"wrote {joint} and {joint_plot}")
        method = "mixture" if K.CLUSTER_PROBS in query.obsm else "leiden"
        _finish(query, plan, method, resolution, transfer_kwargs.get("seed", 0), command,
                [*model.spec.batch_keys], new, umap=new.transfer_umap, extras=extras)
    return result


def _summary(info: dict[str, Any]) -> str:
    parts = [f"{info['n_features_matched']} features matched"]
    if info["n_missing_features"]:
        parts.append(f"{info['n_missing_features']} missing (zero-filled)")
    added = {k: list(v) for k, v in info["new_categories"].items() if len(v)}
    if added:
        parts.append(f"new categories {added} trained ({info['n_trainable_weights']} weights, "
                     f"{info['epochs_run']} epochs)")
    if "fraction_unknown" in info:
        parts.append(f"{info['fraction_unknown']:.1%} called unknown")
    if "accuracy" in info:
        parts.append(f"accuracy {info['accuracy']:.3f}, macro-F1 {info['macro_f1']:.3f}")
    if "novel_auroc" in info:
        parts.append(f"unseen-type AUROC {info['novel_auroc']:.3f}")
    return "transfer: " + "; ".join(parts)


def joint_object(ref: Any, query: Any, label_key: str | None, batch_keys: list[str]) -> Any:
    """Reference and query cells in one AnnData (no X): source, label, condition columns and
    the shared latent and UMAP."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    def part(a: Any, source: str, label: str | None) -> Any:
        obs = pd.DataFrame(index=a.obs_names.astype(str))
        obs[K.SOURCE] = source
        obs["label"] = a.obs[label].astype(str).to_numpy() if label in a.obs else "none"
        for key in batch_keys:
            obs[key] = a.obs[key].astype(str).to_numpy() if key in a.obs else "none"
        obsm = {k: np.asarray(a.obsm[k]) for k in (K.REP, K.UMAP) if k in a.obsm}
        return ad.AnnData(obs=obs, obsm=obsm)

    both = ad.concat([part(ref, "reference", label_key), part(query, "query", K.LABEL)],
                     join="inner", index_unique="-")
    for col in both.obs.columns:
        both.obs[col] = both.obs[col].astype("category")
    return both


def _joint_plot(both: Any, tmp: Path, final: Path) -> None:
    """UMAP of reference and query together: by source, by label, by condition."""
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    from geovae.report.plot import save_figure

    colors = [c for c in both.obs.columns]
    fig = sc.pl.umap(both, color=colors, show=False, return_fig=True, ncols=len(colors))
    save_figure(fig, tmp, final)


__all__ = ["joint_object", "run_transfer"]
