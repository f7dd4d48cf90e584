"""Each merge rule on the SAME fits (`..._dump.py` pickles): the kept weights reloaded, the
rule's merge moves then the delete moves (`CGMVAEModule.after_training`, as in a fit), the
argmax of q(y|x) against the types. With the ``graph`` rule also its PAGA record on the kept
weights (each greedy merge's connectivity, whether its two components' cells are mostly one
type). Run from the repository root: python THIS.py OUT.jsonl DUMP.pt ... (one line a rule
and dump)."""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
import scanpy  # noqa: E402,F401 - imported before the timed moves
import torch  # noqa: E402
from cluster_sets import USED_SHARE, n_used  # noqa: E402
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402

import geovae  # noqa: E402,F401
from geovae.modules import graph_merge as gm  # noqa: E402
from geovae.modules.cgmvae import DELETE_CELLS, CGMVAEModule  # noqa: E402
from geovae.modules.deletion import mixture_probs, seeded_subsample  # noqa: E402

RULES = ("elbo", "graph")


def paga_record(module, source, idx, s, labels):
    """The gap rule's greedy sequence on the kept weights: (merged, connectivity, same type)."""
    means, ml = gm.posterior_means(module, source, idx, s, DELETE_CELLS)
    lab = mixture_probs(ml, module.active, None).argmax(1).numpy()
    sub = seeded_subsample(idx, DELETE_CELLS, s).cpu().numpy()
    truth = labels[sub]
    major = {}
    for c in np.unique(lab):
        t, n = np.unique(truth[lab == c], return_counts=True)
        major[str(c)] = (str(t[n.argmax()]), round(float(n.max() / n.sum()), 3), int(n.sum()))
    _, rec = gm.graph_merge_record(means.numpy(), lab, s)
    # the whole greedy sequence (threshold ~0: every merge, in order)
    _, full = gm.graph_merge_record(means.numpy(), lab, s, threshold=1e-9)
    return {"kept_labels_used": n_used(lab), "major": major, "gap": rec.record(),
            "sequence": [[m, round(c, 4)]
                         for m, c in zip(full.merged, full.connectivity, strict=True)]}


out = Path(sys.argv[1])
for f in sys.argv[2:]:
    d = torch.load(f, weights_only=False)
    model, (source, idx, s), labels = d["model"], d["args"], d["labels"]
    module = model.module
    original = CGMVAEModule.after_training
    for rule in RULES:
        module.load_state_dict(d["state"])
        module.merge_rule, module.weights_fixed = rule, d["fixed"]
        t0 = time.process_time()
        original(module, source, idx, s)  # the rule's merges, then the delete moves
        moves_cpu = round(time.process_time() - t0, 2)
        pred = model.cluster_probs_of(source).argmax(1)
        w = module.mixture_weight_means().cpu().numpy()
        rec = {"data": d["data"], "k": d["k"], "seed": d["seed"], "rule": rule,
               "ari": round(float(adjusted_rand_score(labels, pred)), 4),
               "nmi": round(float(normalized_mutual_info_score(labels, pred)), 4),
               "n_used": n_used(pred), "n_weight": int((w >= USED_SHARE).sum()),
               "fit_seconds": round(d["seconds"], 1), "epochs_run": d["epochs_run"],
               "moves_cpu_s": moves_cpu}
        if rule == "elbo":
            rec["matches_fit"] = bool((pred == d["written"]).all())
        if rule == "graph":
            module.load_state_dict(d["state"])
            rec.update(paga_record(module, source, idx, s, labels))
        print(json.dumps({k: v for k, v in rec.items() if k not in ("major", "sequence")}))
        with out.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
