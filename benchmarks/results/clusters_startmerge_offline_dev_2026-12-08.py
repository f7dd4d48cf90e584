"""Would the start's Leiden cut, folded by `geovae.cluster`'s PAGA gap merge, start the
c*GMΔVAE better than the cut alone (issue 24)? Development draws only, nothing reported from
them. Reads the captures of clusters_startres_offline_dev_2026-12-07.py (the pretrained
posterior means of the start's cells and their labels; recaptured 2026-12-08 at main 9268c78,
same draws: baron_mouse 10 11, kang_stim 0 1, kang 0-2, pbmc68k 0 1, digits 0-2, hard 0-2,
medium 0, blobs 0-2) and prints, per capture and Leiden resolution, the clusters, the start's
ARI and `icl` of the cut as the start makes it (``raw``) and after the gap merge on the same
15-NN graph (``merged``: `geovae.graph.merge.merge_clusters`, ``threshold="gap"``).
Record: clusters_startmerge_offline_dev_2026-12-08.jsonl.

    cd /tmp/captures && python clusters_startres_offline_dev_2026-12-07.py capture pbmc68k 0
    python clusters_startmerge_offline_dev_2026-12-08.py [FOLDER]
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import geovae  # noqa: F401 - before torch (OpenMP settings)

RESOLUTIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def evaluate(folder: Path) -> None:
    """One JSON line per capture (module docstring)."""
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from geovae.graph.merge import GAP, merge_clusters
    from geovae.graph.neighbors import points_graph
    from geovae.modules.mixture_start import START_NEIGHBORS, icl, leiden_labels

    for path in sorted(folder.glob("*.npz")):
        saved = np.load(path, allow_pickle=True)
        data, seed_text = path.stem.rsplit("_", 1)
        seed, means, k = int(seed_text), saved["means"], int(saved["k"])
        graph = points_graph(means, "start", START_NEIGHBORS, seed)
        row: dict = {"data": data, "seed": seed, "cells": len(means)}
        for r in RESOLUTIONS:
            raw = leiden_labels(means, k, seed, r, graph)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                merged = merge_clusters(graph, raw, "start", GAP)[0]
            merged = np.unique(merged, return_inverse=True)[1]
            row[str(r)] = {name: {"clusters": int(lab.max() + 1),
                                  "ari": round(adjusted_rand_score(saved["truth"], lab), 3),
                                  "icl": round(icl(means, lab), 1)}
                           for name, lab in (("raw", raw), ("merged", merged))}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    evaluate(Path(sys.argv[1] if len(sys.argv) > 1 else "startres_captures"))
