"""Other rules for the c*GMΔVAE's start partition (issue 24), weighed offline on development
draws only; nothing reported from them, nothing shipped from them.

Captures: clusters_startres_offline_dev_2026-12-07.py ``capture DATA SEED`` (the pretrained
posterior means of the start's cells and their labels, main 9268c78, 2026-12-08), the 19
draws of that record (baron_mouse 10 11, kang_stim 0 1, kang 0-2, pbmc68k 0 1, digits 0-2,
hard 0-2, medium 0, blobs 0-2) and 29 more (baron_mouse 12-15, kang_stim 2-4, kang 3-7,
pbmc68k 2-9, digits 3-5, hard 3-5, medium 1 2, blobs 3): 48 draws, 8 sets.

Unlike the 2026-12-07 evaluation (Leiden seeded with the draw's seed), Leiden here is seeded
as the fit seeds it (the trainer passes seed + 7907 to the start; checked: a whole pbmc68k
seed-1 fit chose what this gives). Per capture and resolution 0.25-2: the cut as the start
makes it (``raw``: clusters, ARI, the log-likelihood part of `icl` and its parameter count
nu), the cut after `geovae.cluster`'s PAGA gap merge (``merged``), and greedy ICL merges
(``greedy``: merge the pair of clusters whose union raises `icl` most, until none does) of
the cuts at 1 and 1.5, free or only within the clusters of the cut at 0.25 / 0.5.

    python clusters_startrule_offline_dev_2026-12-08.py evaluate CAPTURES > rec.jsonl
    python clusters_startrule_offline_dev_2026-12-08.py summary rec.jsonl

Record: clusters_startrule_offline_dev_2026-12-08.jsonl; RESULTS.md ("The start's resolution").
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

import geovae  # noqa: F401 - before torch (OpenMP settings)

RESOLUTIONS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
FIT_SEED_OFFSET = 7907  # `Trainer.fit` passes seed + 7907 to `before_epoch`, hence the start


def cluster_loglik(points: np.ndarray, n: int) -> float:
    """One cluster's part of `icl` before the penalty (its cells' log share + log density)."""
    from scipy.stats import norm

    sd = np.sqrt(points.var(0) + 1e-4)
    return float(len(points) * np.log(len(points) / n)
                 + norm.logpdf(points, points.mean(0), sd).sum())


def greedy_icl(points: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None
               ) -> np.ndarray:
    """Merge the two clusters whose union raises `icl` most while one does; with ``groups``
    (a group per cell, constant within each cluster) only clusters of one group merge."""
    n, d = points.shape
    penalty = 0.5 * (2 * d + 1) * np.log(n)  # one cluster's parameters in `icl`
    labels = labels.copy()
    while len(ks := np.unique(labels)) > 1:
        ll = {k: cluster_loglik(points[labels == k], n) for k in ks}
        best, pair = 0.0, None
        for a, i in enumerate(ks):
            for j in ks[a + 1:]:
                if groups is not None and groups[labels == i][0] != groups[labels == j][0]:
                    continue
                both = (labels == i) | (labels == j)
                gain = cluster_loglik(points[both], n) - ll[i] - ll[j] + penalty
                if gain > best:
                    best, pair = gain, (i, j)
        if pair is None:
            break
        labels[labels == pair[1]] = pair[0]
    return np.unique(labels, return_inverse=True)[1]


def evaluate(folder: Path) -> None:
    """One JSON line per capture (module docstring)."""
    from sklearn.metrics import adjusted_rand_score

    from geovae.graph.merge import GAP, merge_clusters
    from geovae.graph.neighbors import points_graph
    from geovae.modules.mixture_start import START_NEIGHBORS, icl, leiden_labels

    for path in sorted(folder.glob("*.npz")):
        saved = np.load(path, allow_pickle=True)
        data, seed_text = path.stem.rsplit("_", 1)
        means, k, truth = saved["means"], int(saved["k"]), saved["truth"]
        seed = int(seed_text) + FIT_SEED_OFFSET
        n, d = means.shape
        graph = points_graph(means, "start", START_NEIGHBORS, seed)

        def score(lab: np.ndarray, means: np.ndarray = means, truth: np.ndarray = truth
                  ) -> dict:
            n, d = means.shape
            nu = (lab.max() + 1) * (2 * d + 1) - 1
            return {"clusters": int(lab.max() + 1),
                    "ari": round(adjusted_rand_score(truth, lab), 3),
                    "loglik": round(icl(means, lab) + 0.5 * nu * np.log(n), 1), "nu": int(nu)}

        row: dict = {"data": data, "seed": int(seed_text), "cells": n, "dim": d}
        cuts = {r: leiden_labels(means, k, seed, r, graph) for r in RESOLUTIONS}
        for r, raw in cuts.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                merged = np.unique(merge_clusters(graph, raw, "start", GAP)[0],
                                   return_inverse=True)[1]
            row[f"{r:g}"] = {"raw": score(raw), "merged": score(merged)}
        for r in (1.0, 1.5):
            row[f"greedy{r:g}"] = score(greedy_icl(means, cuts[r]))
            for c in (0.25, 0.5):  # each fine cluster in the coarse cluster most of it is in
                groups = np.zeros(n, int)
                for q in np.unique(cuts[r]):
                    groups[cuts[r] == q] = np.bincount(cuts[c][cuts[r] == q]).argmax()
                row[f"greedy{r:g}_in{c:g}"] = score(greedy_icl(means, cuts[r], groups))
        print(json.dumps(row), flush=True)


def summary(record: Path) -> None:
    """Per set the mean start ARI of each rule (the clusters the fit then keeps)."""
    rows = [json.loads(line) for line in record.read_text().splitlines()]

    def by_icl(row: dict, grid: tuple[str, ...], factor: float = 1.0) -> dict:
        score = {g: row[g]["raw"]["loglik"]
                 - factor * 0.5 * row[g]["raw"]["nu"] * np.log(row["cells"]) for g in grid}
        return row[max(sorted(grid, key=float, reverse=True), key=score.__getitem__)]["raw"]

    rules = {"resolution 1": lambda r: r["1"]["raw"],
             "ICL 0.5/0.75/1 (default)": lambda r: by_icl(r, ("0.5", "0.75", "1")),
             "ICL, half penalty": lambda r: by_icl(r, ("0.5", "0.75", "1"), 0.5),
             "ICL 0.5-1.25": lambda r: by_icl(r, ("0.5", "0.75", "1", "1.25")),
             "gap merge of 1 (geovae.cluster)": lambda r: r["1"]["merged"],
             "greedy ICL from 1": lambda r: r["greedy1"],
             "greedy ICL from 1 within 0.5": lambda r: r["greedy1_in0.5"],
             "greedy ICL from 1.5 within 0.25": lambda r: r["greedy1.5_in0.25"]}
    sets = sorted({r["data"] for r in rows})
    print("| rule | " + " | ".join(f"{s} (n {sum(r['data'] == s for r in rows)})" for s in sets)
          + " | mean of sets |")
    print("|---" * (len(sets) + 2) + "|")
    for name, rule in rules.items():
        means = [np.mean([rule(r)["ari"] for r in rows if r["data"] == s]) for s in sets]
        print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means)
              + f" | {np.mean(means):.3f} |")


if __name__ == "__main__":
    if sys.argv[1] == "evaluate":
        evaluate(Path(sys.argv[2] if len(sys.argv) > 2 else "startres_captures"))
    else:
        summary(Path(sys.argv[2]))
