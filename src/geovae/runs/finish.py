"""How every file job ends: cluster on the latent kNN graph, UMAP (unless --no-umap), score
the clusters against known labels, plot, then stage the plot, the model, the h5ad, any extra
outputs and the metrics JSON and commit them together.

UMAP keys: geovae's UMAP always goes to ``obsm['X_geovae_umap']`` (parameters
``uns['geovae_umap']``) and is copied to scanpy's default ``obsm['X_umap']`` /
``uns['umap']`` only when the input holds no UMAP of its own there; an ``X_umap`` that is
geovae's own copy (equal to the input's ``X_geovae_umap``) is geovae's to replace. A user's
keys are never changed.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geovae import _keys as K
from geovae.runs.metrics import Timings, build, describe_agreement, label_agreement, write_json
from geovae.runs.plan import OutputPlan, RunResult

log = logging.getLogger("geovae.runs")


@dataclass
class Job:
    """One file job: what it is, what it read, how long each phase took (for the log and
    the metrics JSON)."""

    verb: str
    input: Path
    command: str | None = None
    timings: Timings = field(default_factory=Timings)
    fmt: str = ""
    shape: tuple[int, int] = (0, 0)
    device: str | None = None
    history: Any = None

    def read(self, path: Path, check: Any = None, **kwargs: Any) -> Any:
        """Read an input (timed), ``check(adata)`` it, and log what was read."""
        from geovae.io.read import input_format, read
        from geovae.runs.describe import describe_input

        with self.timings.phase("read"):
            adata = read(path, **kwargs)
        if check is not None:
            check(adata)
        if path == self.input:
            self.fmt, self.shape = input_format(path), (adata.n_obs, adata.n_vars)
        log.info(describe_input(path, adata, input_format(path)))
        return adata


@dataclass
class Graph:
    """How clusters and the UMAP are made from the latent."""

    method: str = "leiden"
    resolution: float = 1.0
    n_neighbors: int = 15
    umap: bool = True
    seed: int = 0
    use_rep: str = K.REP
    label_key: str | None = None
    colors: list[str] = field(default_factory=list)


def note(result: RunResult, *messages: str, level: int = logging.INFO) -> None:
    """Log messages now and keep them in the result (and the metrics' notes)."""
    for msg in messages:
        log.log(level, msg)
        result.messages.append(msg)


def finish(adata: Any, plan: OutputPlan, graph: Graph, job: Job, result: RunResult,
           model: Any = None, umap: Any = None,
           extras: list[tuple[Path, Any]] | None = None) -> None:
    """Cluster (and UMAP, unless ``umap`` coordinates are given or ``graph.umap`` is off),
    then stage the plot, the model (with its reference cells), the h5ad, any ``extras``
    (path, writer(tmp)) and the metrics, and commit them together."""
    from geovae.io.backed import write_any
    from geovae.io.write import OutputSet, check_space, h5ad_bytes
    from geovae.models.persistence import is_model_dir, write_atlas, write_model_files
    from geovae.report.plot import save_figure, umap_figure
    from geovae.tools.cluster import cluster
    from geovae.tools.record import command_chain, drop_fields, update_record

    saved = _set_aside(adata)
    log.debug(f"clustering obsm['{graph.use_rep}'] ({graph.method}, resolution "
              f"{graph.resolution}, {graph.n_neighbors} neighbours, UMAP "
              f"{'yes' if graph.umap else 'no'})")
    with job.timings.phase("cluster_umap"):
        cluster(adata, use_rep=graph.use_rep, resolution=graph.resolution, seed=graph.seed,
                method=graph.method, n_neighbors=graph.n_neighbors,
                umap=graph.umap and umap is None)
    if graph.umap and umap is not None:
        adata.obsm[K.UMAP] = np.asarray(umap)
    agreement = label_agreement(adata, graph.label_key)
    if agreement is not None:
        note(result, describe_agreement(agreement))
    else:
        drop_fields(adata, "label_agreement")
    info = adata.uns.get(K.UNS)
    update_record(adata, label_agreement=agreement,  # before the plot: its title shows them
                  dataset=(info or {}).get("dataset") or job.input.name)
    weights = sum(t.numel() * t.element_size() for t in model.module.state_dict().values()
                  ) if model is not None and plan.model_dir is not None else 0
    cells = min(adata.n_obs, 50_000) * 256  # the reference cells a model directory keeps
    check_space([(plan.out, h5ad_bytes(adata)),
                 *([(plan.model_dir, 2 * weights + cells)] if weights else [])])
    with OutputSet() as outputs:
        if plan.plot is not None:
            log.info(f"plotting {plan.plot.name}")
            with job.timings.phase("plot"):
                save_figure(umap_figure(adata, [c for c in graph.colors if c],
                                        label_key=graph.label_key),
                            outputs.stage(plan.plot), plan.plot)
        atlas = None
        if model is not None and plan.model_dir is not None:
            atlas = getattr(model, "atlas", None) or reference_cells(model, adata)
        where = _put_umap(adata, saved, graph.umap, result)
        command = job.command or " ".join(sys.argv)
        update_record(adata, command=command, umap=where,
                      commands=[*command_chain(adata.uns.get(K.UNS)), command])
        log.info(f"writing {plan.out}" + (" and the model" if model is not None and
                                          plan.model_dir is not None else ""))
        with job.timings.phase("write"):
            if model is not None and plan.model_dir is not None:
                directory = outputs.stage(plan.model_dir, directory=True,
                                          replace_if=is_model_dir)
                write_model_files(model, directory)
                if atlas is not None:
                    write_atlas(directory, atlas, graph.seed)
            for path, writer in extras or []:
                writer(outputs.stage(path))
            write_any(adata, outputs.stage(plan.out))
        if plan.metrics is not None:
            write_json(build(job.verb, adata, command=job.command or " ".join(sys.argv),
                             input_path=job.input, result=result, timings=job.timings,
                             input_shape=job.shape, input_format=job.fmt,
                             history=job.history, device=job.device, agreement=agreement,
                             umap=where), outputs.stage(plan.metrics))
        outputs.commit()
    log.info(job.timings.summary())


def reference_cells(model: Any, adata: Any) -> dict[str, Any] | None:
    """The training cells a fitted model keeps for transfer: latent, label codes, UMAP and
    per-cell -ELBO (`geovae.models.persistence.reference_cells`, which ``GeoVAE.save`` uses
    too), with this run's latent and UMAP."""
    from geovae.models.persistence import reference_cells as cells

    return cells(model, adata.obsm.get(K.REP), adata.obsm.get(K.UMAP))


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _set_aside(adata: Any) -> dict[str, Any]:
    """Before clustering: take the user's ``X_umap`` / ``uns['umap']`` out of the way (to be
    put back), and drop geovae's own earlier UMAP (this run makes a new one or none)."""
    obsm, uns = adata.obsm, adata.uns
    saved: dict[str, Any] = {}
    own = K.UMAP in obsm and K.UMAP_GEOVAE in obsm and _same(obsm[K.UMAP], obsm[K.UMAP_GEOVAE])
    if own:
        del obsm[K.UMAP]
        uns.pop("umap", None)
    else:
        if K.UMAP in obsm:
            saved["obsm"] = obsm[K.UMAP]
            del obsm[K.UMAP]
        if "umap" in uns:
            saved["uns"] = uns.pop("umap")
    if K.UMAP_GEOVAE in obsm:
        del obsm[K.UMAP_GEOVAE]
    uns.pop(K.UMAP_PARAMS, None)
    return saved


def _put_umap(adata: Any, saved: dict[str, Any], computed: bool,
              result: RunResult) -> dict[str, Any]:
    """After plotting: geovae's UMAP to its own keys (and to ``X_umap`` where that is free),
    the user's keys back in place. Returns the record's ``umap`` field."""
    obsm, uns = adata.obsm, adata.uns
    where: dict[str, Any] = {"computed": computed, "obsm": [], "uns": []}
    if computed and K.UMAP in obsm:
        coords, params = obsm[K.UMAP], uns.pop("umap", None)
        del obsm[K.UMAP]
        obsm[K.UMAP_GEOVAE] = coords
        where["obsm"].append(K.UMAP_GEOVAE)
        if params is not None:
            uns[K.UMAP_PARAMS] = params
            where["uns"].append(K.UMAP_PARAMS)
        if not saved:
            obsm[K.UMAP] = coords
            where["obsm"].append(K.UMAP)
            if params is not None:
                uns["umap"] = dict(params)
                where["uns"].append("umap")
        elif "obsm" in saved:
            note(result, f"the input's own obsm['{K.UMAP}'] is kept; geovae's UMAP is in "
                         f"obsm['{K.UMAP_GEOVAE}'] (scanpy: sc.pl.embedding(adata, "
                         "basis='geovae_umap'))")
    elif not computed:
        note(result, "no UMAP and no plot (--no-umap)")
    if "obsm" in saved:
        obsm[K.UMAP] = saved["obsm"]
    if "uns" in saved:
        uns["umap"] = saved["uns"]
    return where
