"""How every file job ends, in named steps: `cluster_cells` (Leiden or the mixture on the
latent kNN graph, and the UMAP unless ``umap=False``) -> `place_umap` (coordinates given by the
job, e.g. transfer's placement) -> `score_clusters` (against known labels) ->
`name_clusters` (majority label, marker genes) -> `write_outputs`
(stage the plot, the model with its reference cells, the h5ad, any extra outputs and the
metrics JSON, and commit them together). `finish` runs them in that order.

UMAP keys: one policy for the commands and `geovae.cluster`, in `geovae.tools.umap_keys`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geovae import _keys as K
from geovae.errors import Note
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
        fmt = input_format(path)
        if path == self.input:
            self.fmt, self.shape = fmt, (adata.n_obs, adata.n_vars)
        log.info(describe_input(path, adata, fmt))
        return adata


@dataclass
class Graph:
    """How clusters and the UMAP are made from the latent."""

    method: str = "leiden"
    #: a number, "auto" (`geovae.tools.resolution`) or None: auto for a table, 1 otherwise
    resolution: float | str | None = None
    #: the merge (`geovae.graph.merge.parse_merge`): a number, "gap", "off" or None (the default)
    merge: float | str | None = None
    n_neighbors: int = 15
    umap: bool = True
    #: UMAP optimisation epochs (None: geovae's by size, `geovae.tools.cluster.umap_settings`;
    #: 0: umap-learn's default)
    umap_epochs: int | None = None
    seed: int = 0
    use_rep: str = K.REP
    label_key: str | None = None
    colors: list[str] = field(default_factory=list)


def note(result: RunResult, *messages: str, level: int = logging.INFO) -> None:
    """Log messages now and keep them in the result (and the metrics' notes)."""
    for msg in map(result.say, messages):
        log.log(level, msg)
        result.messages.append(msg)


def finish(adata: Any, plan: OutputPlan, graph: Graph, job: Job, result: RunResult,
           model: Any = None, umap: Any = None,
           extras: list[tuple[Path, Any]] | None = None) -> None:
    """End a file job: `cluster_cells`, `place_umap` (``umap``: coordinates to use instead of
    computing a UMAP), `score_clusters`, `name_clusters`, then `write_outputs` (the plot, the
    model with its reference cells, the h5ad, any ``extras`` (path, writer(tmp)) and the
    metrics)."""
    cluster_cells(adata, graph, job, compute_umap=umap is None)
    merge_note(adata, graph, result)
    if graph.umap and umap is not None:
        place_umap(adata, umap)
    agreement = score_clusters(adata, graph, result)
    name_clusters(adata, graph, job)
    umap_notes(adata, result)
    write_outputs(adata, plan, graph, job, result, model, extras, agreement)
    log.info(job.timings.summary())


def cluster_cells(adata: Any, graph: Graph, job: Job, compute_umap: bool = True) -> None:
    """Clusters on the kNN graph of ``obsm[graph.use_rep]`` and, with ``graph.umap`` (and
    ``compute_umap``), a UMAP under geovae's UMAP keys (`geovae.tools.cluster`)."""
    from geovae.graph.merge import parse_merge
    from geovae.tools.cluster import cluster
    from geovae.tools.resolution import default_resolution

    resolution = default_resolution(graph.resolution, job.fmt)
    log.debug(f"clustering obsm['{graph.use_rep}'] ({graph.method}, resolution "
              f"{resolution}, {graph.n_neighbors} neighbours, UMAP "
              f"{'yes' if graph.umap else 'no'})")
    with job.timings.phase("cluster_umap"):
        cluster(adata, use_rep=graph.use_rep, resolution=resolution, seed=graph.seed,
                method=graph.method, n_neighbors=graph.n_neighbors,
                umap=graph.umap and compute_umap, umap_epochs=graph.umap_epochs,
                merge=parse_merge(graph.merge))


def merge_note(adata: Any, graph: Graph, result: RunResult) -> None:
    """A warning where a merge was asked for ({merge}, not ``off``) but not made: it merges
    Leiden clusters cut at a given resolution, not a mixture's components nor the clusters of
    a resolution chosen from the data."""
    from geovae.graph.merge import parse_merge

    if graph.merge is None or parse_merge(graph.merge) is None:
        return
    if adata.uns[K.UNS]["cluster"].get("merge") is not None:
        return
    why = ("the clusters are the mixture's components" if graph.method == "mixture" else
           "the resolution was chosen from the data ({resolution=auto}), which picks the "
           "number of clusters itself: give a resolution ({resolution=1}) to merge")
    note(result, Note(f"{{merge={graph.merge}}} had no effect: it merges Leiden clusters cut "
                      f"at a given resolution, and {why}"), level=logging.WARNING)


def place_umap(adata: Any, coords: Any) -> None:
    """Given UMAP coordinates under the same keys as a computed UMAP (`umap_keys.place`)."""
    from geovae.tools.record import update_record
    from geovae.tools.umap_keys import place

    update_record(adata, umap=place(adata, coords))


def umap_notes(adata: Any, result: RunResult) -> None:
    """Say where the UMAP went when it is not in ``X_umap``, or that there is none."""
    from geovae.tools.umap_keys import users_umap_kept

    where = adata.uns[K.UNS]["umap"]
    if users_umap_kept(adata, where):
        note(result, f"the input's own obsm['{K.UMAP}'] is kept; geovae's UMAP is in "
                     f"obsm['{K.UMAP_GEOVAE}'] (scanpy: sc.pl.embedding(adata, "
                     "basis='geovae_umap'))")
    elif not where["computed"]:
        note(result, Note("no UMAP and no plot ({umap=False})"))


def score_clusters(adata: Any, graph: Graph, result: RunResult) -> dict[str, Any] | None:
    """ARI and NMI of the clusters against ``graph.label_key``, noted and recorded (None
    without labels: `cluster` dropped an earlier run's agreement)."""
    from geovae.tools.record import update_record

    agreement = label_agreement(adata, graph.label_key)
    if agreement is not None:
        note(result, describe_agreement(agreement))
    update_record(adata, label_agreement=agreement)
    return agreement


def name_clusters(adata: Any, graph: Graph, job: Job) -> None:
    """Each cluster's majority ``graph.label_key`` label and top marker genes (scanpy's
    rank_genes_groups on a seeded subsample, `geovae.tools.markers`), recorded; timed
    with the clusters."""
    from geovae.tools import markers
    from geovae.tools.record import update_record

    params = (adata.uns.get(K.UNS) or {}).get("params")
    layer = params.get("layer") if isinstance(params, dict) else None
    if adata.n_obs > markers.MAX_CELLS:  # the tool logs the ranking itself when it starts
        log.info(f"cluster names: marker genes on a subsample of {markers.MAX_CELLS:,} of "
                 f"{adata.n_obs:,} cells (seed {graph.seed})")
    with job.timings.phase("cluster_umap"):
        update_record(adata, cluster_names=markers.name_clusters(
            adata, graph.label_key, layer, graph.seed))


def write_outputs(adata: Any, plan: OutputPlan, graph: Graph, job: Job, result: RunResult,
                  model: Any = None, extras: list[tuple[Path, Any]] | None = None,
                  agreement: dict[str, Any] | None = None) -> None:
    """Stage the plot (titled with the data set and the agreement), the model (with its
    reference cells), the h5ad, any ``extras`` and the metrics, then commit them together;
    the record gets the command and the chain of commands that made the file."""
    from geovae.io.backed import write_any
    from geovae.io.write import OutputSet, check_space, h5ad_bytes
    from geovae.models.persistence import is_model_dir, write_model_files, write_reference_cells
    from geovae.report.plot import save_figure, umap_figure
    from geovae.tools.record import command_chain, update_record

    info = adata.uns.get(K.UNS)
    update_record(adata, dataset=(info or {}).get("dataset") or job.input.name)
    command = job.command or " ".join(sys.argv)
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
        cells = None  # a fitted model's: this run's latent and UMAP (geovae's, or none)
        if model is not None and plan.model_dir is not None:
            cells = model.get_reference_cells(adata, umap_key=K.UMAP_GEOVAE)
        update_record(adata, command=command,
                      commands=[*command_chain(adata.uns.get(K.UNS)), command])
        log.info(f"writing {plan.out}" + (" and the model" if model is not None and
                                          plan.model_dir is not None else ""))
        with job.timings.phase("write"):
            if model is not None and plan.model_dir is not None:
                directory = outputs.stage(plan.model_dir, directory=True,
                                          replace_if=is_model_dir)
                write_model_files(model, directory)
                if cells is not None:
                    write_reference_cells(directory, cells, graph.seed)
            for path, writer in extras or []:
                writer(outputs.stage(path))
            write_any(adata, outputs.stage(plan.out))
        if plan.metrics is not None:
            write_json(build(job.verb, adata, command=command, input_path=job.input,
                             result=result, timings=job.timings, input_shape=job.shape,
                             input_format=job.fmt, history=job.history, device=job.device,
                             agreement=agreement, umap=adata.uns[K.UNS]["umap"]),
                       outputs.stage(plan.metrics))
        outputs.commit()
