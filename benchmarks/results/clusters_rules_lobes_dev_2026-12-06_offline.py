"""The "lobes" rule's development grid (record clusters_rules_lobes_dev_2026-12-06.jsonl):
each rule's merges on the dumped draws of one fit's kept weights (`..._dump.py`), ARI of the
argmax of q(y|z) on the merge subsample, no delete moves. Run:
python THIS.py 5:2,6:3 DUMP.pt ...  (grid of LOBE_T:LOBE_FEATURES)."""
import sys

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score as ari

from geovae.modules import merging as m
from geovae.modules.deletion import mixture_probs


def summary(lab: np.ndarray, logits: torch.Tensor, active: torch.Tensor) -> str:
    p = mixture_probs(logits, active, None).argmax(1).numpy()
    counts = np.unique(p, return_counts=True)[1]
    return f"{ari(lab, p):.3f}/{int((counts >= max(1, np.ceil(0.005 * len(p)))).sum())}"


grid = [(float(a), int(b)) for a, b in (s.split(":") for s in sys.argv[1].split(","))]
for f in sys.argv[2:]:
    d = torch.load(f, weights_only=False)
    lab, act, lg = d["labels"], d["active"], d["logits"]
    y = m.depth_normalised(d["x"], d["c"], not f.split("/")[-1].startswith("blobs"))
    a_e, _ = m.greedy_merges(d["z"], lg, d["loc"], d["log_pz"], d["alpha"].double(), act,
                             float(d["n_obs"]) / int(d["n_sub"]))
    a_d, _ = m.greedy_overlap_merges(d["z"], lg, d["loc"], d["scale"], act, "demp")
    row = [f"kept {summary(lab, lg, act)}", f"elbo {summary(lab, lg, a_e)}",
           f"demp {summary(lab, lg, a_d)}"]
    for t, g in grid:
        m.LOBE_T, m.LOBE_FEATURES = t, g
        a_l, _ = m.greedy_overlap_merges(d["z"], lg, d["loc"], d["scale"], act, "lobes",
                                         profiles=y)
        row.append(f"lobes{t}:{g} {summary(lab, lg, a_l)}")
    print(f.split("/")[-1], " | ".join(row), flush=True)
