"""Exploratory (not a rule of geovae): the ``graph`` merge rule with the ``lobes`` rule's
expression veto on each fold (`geovae.modules.merging.expression_differs`, its constants as
they are), run on the kept weights of `clusters_graph_2026-12-07_dump.py` pickles, merges
then delete moves as in a fit. Run from the repository root: python THIS.py DUMP.pt ...
(one JSON line per dump)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scanpy  # noqa: E402,F401
import torch  # noqa: E402
from cluster_sets import n_used  # noqa: E402
from sklearn.metrics import adjusted_rand_score as ari  # noqa: E402

import geovae.modules.cgmvae as cg  # noqa: E402
from geovae.modules import graph_merge as gm  # noqa: E402
from geovae.modules import merging  # noqa: E402
from geovae.modules.cgmvae import CGMVAEModule  # noqa: E402
from geovae.modules.deletion import mixture_probs  # noqa: E402

orig_merge = merging.merge_components


@torch.no_grad()
def vetoed(module, source, idx, seed, max_cells, rule=None):
    d = merging.mixture_draws(module, source, idx, seed, max_cells, profiles=True)
    means, ml = gm.posterior_means(module, source, idx, seed, max_cells)
    active = module.active.clone()
    loc, scale = d["loc"].clone(), d["scale"].clone()
    labels = mixture_probs(ml, active, None).argmax(1).numpy()
    groups = gm.graph_groups(means.numpy(), labels, seed)
    q = mixture_probs(d["logits"], active, None)
    hard = q.argmax(1)
    merges, vetoes = [], 0
    for g in groups:
        mass = q.sum(0)
        order = sorted(g, key=lambda c: -float(mass[c]))
        for j in order[1:]:
            if merging.expression_differs(d["profiles"], hard, order[0], j):
                vetoes += 1
                continue
            q = merging.fold(d["z"], d["logits"], loc, scale, active, q, order[0], j, merges)
    for i, j, a, sd in merges:
        merging.apply_merge(module, i, j, a, sd)
    if merges:
        module.active.copy_(active)
        module.gamma.copy_(module.alpha + module.n_obs * q.mean(0).to(module.gamma.dtype))
    vetoed.count = vetoes
    return [(i, j) for i, j, _, _ in merges]


for f in sys.argv[1:]:
    d = torch.load(f, weights_only=False)
    model, (source, idx, s), labels = d["model"], d["args"], d["labels"]
    module = model.module
    module.load_state_dict(d["state"])
    module.merge_rule, module.weights_fixed = "graph", d["fixed"]
    cg.merge_components = vetoed
    try:
        CGMVAEModule.after_training(module, source, idx, s)
    finally:
        cg.merge_components = orig_merge
    pred = model.cluster_probs_of(source).argmax(1)
    print(json.dumps({"data": d["data"], "k": d["k"], "seed": d["seed"], "rule": "graph_veto",
                      "ari": round(float(ari(labels, pred)), 4), "n_used": n_used(pred),
                      "vetoes": vetoed.count}), flush=True)
