"""Merge Leiden clusters that the kNN graph cannot tell apart.

Modularity's optimum at a fixed resolution cuts large homogeneous groups of cells: the gain of
a cut grows with the group's size while its cost, the edges across it, grows more slowly. At
100,000 simulated cells of 6 types Leiden at resolution 1 cut every type into 2-3 pieces in
a 10-dimensional VAE latent (ARI 0.52), at 20,000 it did not (ARI 0.96). A cut through a
homogeneous group leaves as many edges across it as a random assignment of the cells would:
scanpy's PAGA connectivity (`scanpy.tl.paga`, Wolf et al. 2019: the edges between two
clusters over their number under a random-partition null, capped at 1) is near 1 there and
near 0 between real groups. So, after Leiden, the two most connected clusters are merged while
their connectivity exceeds `MERGE_CONNECTIVITY`, and PAGA is recomputed after each merge
(greedy agglomeration: a merged pair is judged as one cluster from then on, so weak links do
not chain). A cut's share of edges falls as the group grows (pieces of one type at 0.78 at
200,000 cells, 0.73 at 300,000), so by default (`DEFAULT_MERGE`, the gap rule, `gap_stop`)
merging goes on below the threshold, down to `GAP_FLOOR`, where that ends at a
`GAP_RATIO`-fold drop in connectivity; pairs of different types stayed at 0.02-0.04.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np

log = logging.getLogger("geovae.tools")

#: merge two clusters while their PAGA connectivity exceeds this. Chosen on the development
#: set (`benchmarks/bench_cluster_merge.py`'s DEV: the seed-0 100k- and 20k-cell latents of
#: `benchmarks/bench_vs_scvi.py` and the bundled Kang data fitted with and without
#: ``--batch-key stim``, seeds 0-4): the threshold of 0.3, 0.5-0.9 with the highest mean ARI
#: over those sets, 0.8 (0.771; 0.7: 0.770, 0.5: 0.759, 0.9: 0.730). At 100k cells the merges
#: joined pieces of one type at connectivity 0.80-1, the 6 types left stayed below 0.03: see
#: benchmarks/RESULTS.md ("Merging Leiden clusters the graph cannot tell apart")
MERGE_CONNECTIVITY = 0.8
#: the command line's word for no merging (``--leiden-merge off``; Python: ``merge=None``)
OFF = "off"
#: the gap rule (``merge="gap"``): the merges above `MERGE_CONNECTIVITY`, then on down to
#: `GAP_FLOOR` where that ends at a drop: the last pair merged at least `GAP_RATIO` times as
#: connected as the most connected pair left. Pieces of one group get less connected as the
#: group grows (the weakest such merge at 100,000 simulated cells 0.80-0.85, at 200,000 0.78,
#: at 300,000 0.72-0.73), the pairs of different groups stay far below (0.02-0.04); floor and ratio
#: set after seeing the 200k draw, checked on a new 300k draw: benchmarks/RESULTS.md
GAP = "gap"
GAP_FLOOR = 0.3
GAP_RATIO = 10.0
#: what `geovae.tools.cluster.cluster` and the commands merge with by default: the gap rule
#: (the same clusters as 0.8 on every development and report set but one seed of one, and 6
#: of 6 types at 200,000 and 300,000 simulated cells where 0.8 left 9 and 11-13)
DEFAULT_MERGE = GAP


def parse_merge(value: float | str | None) -> float | str | None:
    """A merge setting as the runs and the command line take it (a number or its text, ``off``,
    ``gap``, or None for the default) as `geovae.tools.cluster.cluster` takes it: a PAGA
    connectivity in [0, 1], `GAP` (also for None: `DEFAULT_MERGE`), or None for ``off``."""
    if value is None:
        return DEFAULT_MERGE
    given = value
    if isinstance(value, str) and value.strip().lower() not in (OFF, GAP):
        try:
            value = float(value)
        except ValueError:
            value = float("nan")
    return check_merge(value.strip().lower() if isinstance(value, str) else value, given)


def check_merge(value: float | str | None, given: object = None) -> float | str | None:
    """``value`` as `geovae.tools.cluster.cluster` uses it when it is a merge setting: a PAGA
    connectivity in [0, 1] (a float), `GAP`, or None or `OFF` (no merging: None); else a
    one-line `OptionError` quoting ``given`` (what the user wrote; default ``value``). The
    check of both `cluster` and the command line (`parse_merge`)."""
    from geovae.errors import OptionError

    if value is None or value == OFF:
        return None
    if value == GAP:
        return GAP
    if isinstance(value, (str, bool)) or not 0 <= value <= 1:  # NaN fails both comparisons
        raise OptionError(f"{{opt}} must be a PAGA connectivity between 0 and 1, {GAP} or {OFF} "
                          f"(no merging), got '{value if given is None else given}'",
                          param="merge")
    return float(value)


@dataclass
class MergeRecord:
    """What was merged and why: each merge's two clusters (by their Leiden names, a merged
    cluster named ``a+b``) and their connectivity, and the clusters before and after."""

    threshold: float
    n_before: int
    rule: str = "threshold"
    n_after: int = 0
    merged: list[str] = field(default_factory=list)
    connectivity: list[float] = field(default_factory=list)
    #: the highest connectivity left between two clusters (0 with one cluster)
    max_left: float = 0.0
    #: gap rule: whether it went on below the threshold to a drop (and how deep the drop was)
    at_gap: bool = False
    #: pairs a ``veto`` kept apart (``a+b``, each once) and their connectivity when it did
    vetoed: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the log."""
        if not self.merged:
            return (f"no Leiden clusters merged: the most connected pair has PAGA connectivity "
                    f"{self.max_left:.2f} <= {self.threshold:g}")
        above = next((k for k, c in enumerate(self.connectivity) if c <= self.threshold),
                     len(self.merged))
        why = f"{above} pair(s) with PAGA connectivity > {self.threshold:g}"
        if self.at_gap:
            last = self.connectivity[-1]
            drop = f"{last / self.max_left:.0f}-fold" if self.max_left > 0 else "to no edge"
            why += (f", then {len(self.merged) - above} more down to {last:.2f}, where it "
                    f"drops {drop}")
        return (f"merged {self.n_before} Leiden clusters into {self.n_after}: {why} (highest "
                f"left {self.max_left:.2f})")

    def record(self) -> dict[str, Any]:
        """The fields for ``uns['geovae']['cluster']['merge']``."""
        out = {"rule": self.rule, "threshold": float(self.threshold),
               "n_before": int(self.n_before), "n_after": int(self.n_after),
               "merged": list(self.merged),
               "connectivity": [float(c) for c in self.connectivity],
               "max_left": float(self.max_left)}
        if self.rule == GAP:
            out.update(floor=GAP_FLOOR, ratio=GAP_RATIO, at_gap=bool(self.at_gap))
        if self.vetoed:
            out["vetoed"] = {k: float(v) for k, v in self.vetoed.items()}
        return out


def edge_counts(adata: ad.AnnData, codes: np.ndarray, n_groups: int, neighbors_key: str
                ) -> np.ndarray:
    """Directed kNN edges from cluster i to cluster j (the graph of ``neighbors_key``, each
    stored neighbour one edge, as PAGA counts them), a dense ``n_groups`` x ``n_groups``."""
    from scipy import sparse

    dist = sparse.csr_matrix(adata.obsp[adata.uns[neighbors_key]["distances_key"]])
    ones = sparse.csr_matrix((np.ones(dist.nnz), dist.indices, dist.indptr), shape=dist.shape)
    member = sparse.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)),
                               shape=(len(codes), n_groups))
    return np.asarray((member.T @ ones @ member).todense())


def paga_connectivity(edges: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """scanpy's PAGA connectivity (``scanpy.tl.paga``, model v1.2) from the directed edge
    counts between clusters and their sizes: the edges between two clusters (both ways) over
    their number under a random-partition null, capped at 1; 0 where no edge. The same formula
    as scanpy's, on the clusters' counts, so that a merge costs a sum of two rows instead of a
    pass over the cells (tests/tools/test_merge.py checks it against ``sc.tl.paga``)."""
    n = float(sizes.sum())
    between = edges - np.diag(np.diag(edges))
    out = edges.sum(axis=1)  # inner + outgoing edges of each cluster
    between = between + between.T
    expected = (np.outer(out, sizes) + np.outer(sizes, out)) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        conn = np.where(expected > 0, between / expected, 1.0)
    conn = np.where(between > 0, np.minimum(conn, 1.0), 0.0)
    np.fill_diagonal(conn, 0.0)
    return conn


def merge_clusters(adata: ad.AnnData, labels: np.ndarray, neighbors_key: str,
                   threshold: float | str = MERGE_CONNECTIVITY,
                   veto: Callable[[np.ndarray, np.ndarray, int, int], bool] | None = None
                   ) -> tuple[np.ndarray, MergeRecord]:
    """Merge the two most connected clusters of ``labels`` (PAGA on the graph of
    ``neighbors_key``) while their connectivity exceeds ``threshold`` (`GAP`: the gap rule,
    `gap_stop`); return the new labels (renamed "0", "1", ... by size when anything was
    merged) and what was merged (a merged cluster named ``a+b`` by the Leiden names).
    ``veto(edges, sizes, i, j)`` (the clusters' directed edge counts and sizes now, a pair):
    True keeps that pair apart at this step, as if it had no edge; asked again after each
    merge."""
    rule = GAP if threshold == GAP else "threshold"
    top = MERGE_CONNECTIVITY if rule == GAP else float(threshold)
    floor = min(top, GAP_FLOOR) if rule == GAP else top
    labels = np.asarray(labels).astype(str)
    names, codes = np.unique(labels, return_inverse=True)
    current = [str(x) for x in names]
    rec = MergeRecord(threshold=top, n_before=len(current), rule=rule)
    edges = edge_counts(adata, codes, len(current), neighbors_key)
    sizes = np.bincount(codes, minlength=len(current)).astype(float)
    group = np.arange(len(current))  # each Leiden cluster's cluster now
    steps: list[tuple[str, float, np.ndarray, list[str]]] = []
    left = 0.0
    while len(current) > 1:
        conn = paga_connectivity(edges, sizes)
        while True:
            i, j = sorted(np.unravel_index(int(np.argmax(conn)), conn.shape))
            left = float(conn[i, j])
            if left <= floor or veto is None or not veto(edges, sizes, i, j):
                break
            rec.vetoed.setdefault("+".join(sorted((current[i], current[j]), key=_leiden_order)),
                                  left)
            conn[i, j] = conn[j, i] = 0.0
        if left <= floor:
            break
        a, b = sorted((current[i], current[j]), key=_leiden_order)
        edges[i, :] += edges[j, :]
        edges[:, i] += edges[:, j]
        edges = np.delete(np.delete(edges, j, axis=0), j, axis=1)
        sizes[i] += sizes[j]
        sizes = np.delete(sizes, j)
        current[i] = f"{a}+{b}"
        del current[j]
        group = np.where(group == j, i, group)
        group = np.where(group > j, group - 1, group)
        steps.append((f"{a}+{b}", left, group.copy(), list(current)))
        left = 0.0
    conns = [c for _, c, _, _ in steps]
    # one cluster left: no pair to drop to, so the end of the merges is no gap
    n = gap_stop(conns, None if len(current) == 1 else left, top) if rule == GAP \
        else len(steps)
    rec.at_gap = n > 0 and conns[n - 1] <= top
    rec.merged = [name for name, _, _, _ in steps[:n]]
    rec.connectivity = conns[:n]
    rec.max_left = conns[n] if n < len(conns) else left
    rec.n_after = rec.n_before - n
    if rec.n_after == 1:
        rec.max_left = 0.0
    if not n:
        return labels, rec
    return by_size(np.asarray(steps[n - 1][3])[steps[n - 1][2][codes]]), rec


def gap_stop(conns: list[float], left: float | None, top: float = MERGE_CONNECTIVITY,
             ratio: float = GAP_RATIO) -> int:
    """How many of the greedy merges (their connectivities ``conns``, each above `GAP_FLOOR`,
    then ``left``: the highest connectivity after the last, None when they left one cluster)
    the gap rule keeps: the merges up to the first at or below ``top`` (the threshold rule),
    or more, up to the stop with the largest drop of ``ratio`` or more beyond them (the last
    merged pair at least ``ratio`` times as connected as the most connected pair left; where
    the merges end at one cluster no pair is left, so that end is no drop)."""
    n = next((k for k, c in enumerate(conns) if c <= top), len(conns))
    after = [*conns[1:], left]
    best = 0.0
    for k in range(max(n, 1), len(conns) + 1):
        if after[k - 1] is None:  # the merges ended at one cluster: nothing to drop to
            continue
        drop = conns[k - 1] / max(after[k - 1], 1e-12)
        if drop >= ratio and drop > best:
            n, best = k, drop
    return n


def _leiden_order(name: str) -> tuple[int, str]:
    head = name.split("+")[0]
    return (int(head), name) if head.isdigit() else (1 << 30, name)


def by_size(labels: np.ndarray) -> np.ndarray:
    """Clusters renamed "0", "1", ... from the largest down, as Leiden names them."""
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    rank = np.empty(len(names), dtype=int)
    rank[np.argsort(-counts, kind="stable")] = np.arange(len(names))
    return rank[inverse].astype(str)
