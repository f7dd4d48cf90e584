"""The "lobes" veto's (LOBE_EFFECT, LOBE_FEATURES) pairs not in the in-process grid, offline on
the development fits' dumps (``clusters_lobes_effect_2026-12-07.py ... --grid --dump F``): each
setting's merges (`greedy_overlap_merges`, LOBE_T 4) on the merge subsample's draws of the
kept weights, ARI of the argmax of q(y|z) on those cells and components in use; no delete
moves. Run: python THIS.py DUMP.pt ...  (one JSON line per dump)."""
import json
import sys

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score as ari

from geovae.modules import merging as m
from geovae.modules.deletion import mixture_probs

GRID = [(0.5, 3), (0.6, 2), (0.7, 2), (0.8, 2), (0.9, 1), (1.0, 1), (0.8, 1)]


def summary(lab: np.ndarray, logits: torch.Tensor, active: torch.Tensor) -> list:
    p = mixture_probs(logits, active, None).argmax(1).numpy()
    counts = np.unique(p, return_counts=True)[1]
    return [round(ari(lab, p), 3), int((counts >= max(1, np.ceil(0.005 * len(p)))).sum())]


for f in sys.argv[1:]:
    d = torch.load(f, weights_only=False)
    lab, lg, act = d["labels"], d["logits"], d["active"]
    row = {"dump": f.split("/")[-1], "set": "development", "how": "offline, merge subsample, "
           "no delete moves, LOBE_T 4", "kept": summary(lab, lg, act)}
    for e, g in GRID:
        m.LOBE_EFFECT, m.LOBE_FEATURES, m.LOBE_T = e, g, 4.0
        a, _ = m.greedy_overlap_merges(d["z"], lg, d["loc"], d["scale"], act, "lobes",
                                       profiles=d["profiles"])
        row[f"e{e} f{g}"] = summary(lab, lg, a)
    print(json.dumps(row), flush=True)
