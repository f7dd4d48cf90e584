"""The "lobes" rule's veto by effect size (issue 24, review F22): one default c*GMΔVAE fit per
(data, K, seed) of bench_clusters' sets (the seed draws the data AND seeds the fit), each
rule's moves (then the delete moves) on the same kept weights, as `bench_clusters.run_rules`:
``elbo``, ``demp``, ``lobes`` (the veto at the module's constants: standardised mean
difference >= `LOBE_EFFECT` with |Welch t| > `LOBE_T` on >= `LOBE_FEATURES` features) and
``lobes_t`` (the earlier veto, |t| > 6 on >= 3 features: LOBE_EFFECT 0, LOBE_T 6); ARI / NMI
of the argmax of q(y|x) on all cells, components in use. ``pairs`` (kept weights, merge
subsample): i, j, DEMP, cells of i / j, their majority type's share, same majority type,
and the 8 largest |effect| among features with |t| > `LOBE_T`. ``--grid`` (development fits)
adds the veto's (effect, features) grid; ``--dump FILE`` saves the merge subsample's draws
and profiles for offline grids.

Run from the repository root (one thread, niced; a record per line)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/results/THIS.py DATA K SEED [--grid] >> REC
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import cpu_model, load_average  # noqa: E402
from cluster_sets import epochs_of, load, n_used  # noqa: E402
from sklearn.metrics import adjusted_rand_score as ari  # noqa: E402
from sklearn.metrics import normalized_mutual_info_score as nmi  # noqa: E402

import geovae  # noqa: E402
from geovae.modules import merging  # noqa: E402
from geovae.modules.cgmvae import DELETE_CELLS, CGMVAEModule  # noqa: E402
from geovae.modules.deletion import mixture_probs, seeded_subsample  # noqa: E402

#: the module that holds the veto and its constants (merging, or a module split from it)
VETO = sys.modules[merging.expression_differs.__module__]
#: the earlier veto (main until this change): |t| > 6 on >= 3 features, no effect size
T_RULE = {"LOBE_EFFECT": 0.0, "LOBE_T": 6.0, "LOBE_FEATURES": 3}
#: the development grid: (LOBE_EFFECT, LOBE_FEATURES) at the module's LOBE_T, then LOBE_T
EFFECTS, FEATURES, GUARDS = (0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2), (1, 3, 5), (3.0, 5.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("k", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("--grid", action="store_true")
    ap.add_argument("--dump", default=None)
    args = ap.parse_args()
    adata, kw, truth = load(args.data, args.seed)
    labels = adata.obs[truth].astype(str).to_numpy()
    saved: dict = {}
    original = CGMVAEModule.after_training

    def keep(module, source, idx, s) -> None:
        saved.update(state=copy.deepcopy(module.state_dict()), args=(source, idx, s),
                     fixed=module.weights_fixed)
        original(module, source, idx, s)

    t0 = time.perf_counter()
    CGMVAEModule.after_training = keep
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = geovae.fit(adata, model="cgmvae", model_options={"n_clusters": args.k},
                               seed=args.seed, epochs=None, progress=False, device="cpu",
                               heldout_samples=0, batch_key="condition", **kw)
    finally:
        CGMVAEModule.after_training = original
    seconds = time.perf_counter() - t0
    module, (source, idx, s) = model.module, saved["args"]
    default_rule = module.merge_rule
    written = adata.obsm["geovae_cluster_probs"].argmax(1)
    constants = {name: getattr(VETO, name) for name in T_RULE}

    def moves(rule: str, **consts) -> dict:
        module.load_state_dict(saved["state"])
        module.merge_rule, module.weights_fixed = rule, saved["fixed"]
        for name, value in {**constants, **consts}.items():
            setattr(VETO, name, value)
        try:
            original(module, source, idx, s)
        finally:
            for name, value in constants.items():
                setattr(VETO, name, value)
        pred = model.cluster_probs_of(source).argmax(1)
        return {"ari": round(float(ari(labels, pred)), 4),
                "nmi": round(float(nmi(labels, pred)), 4), "n_used": n_used(pred),
                **({"matches_fit": bool((pred == written).all())} if rule == default_rule
                   and not consts else {})}

    module.load_state_dict(saved["state"])
    kept = model.cluster_probs_of(source).argmax(1)
    d = merging.mixture_draws(module, source, idx, s, DELETE_CELLS, profiles=True)
    hard = mixture_probs(d["logits"], module.active, None).argmax(1)
    sub = seeded_subsample(idx, DELETE_CELLS, s).cpu().numpy()
    pairs = []
    for i, j, _, demp in merging.pair_statistics(d["logits"], d["loc"], d["scale"],
                                                 module.active, rules=("demp",)):
        sides = []
        for c in (i, j):
            types, n = np.unique(labels[sub][hard.numpy() == c], return_counts=True)
            sides.append((int(n.sum()), str(types[n.argmax()]) if len(n) else "",
                          round(float(n.max() / n.sum()), 3) if len(n) else 0.0))
        effect, t = VETO.feature_effect(d["profiles"], hard, i, j)
        top = effect.abs()[t.abs() > VETO.LOBE_T].sort(descending=True).values[:8]
        pairs.append([i, j, round(demp, 4), sides[0][0], sides[1][0], sides[0][2],
                      sides[1][2], sides[0][1] == sides[1][1],
                      [round(float(v), 2) for v in top]])
    if args.dump:
        torch.save({**d, "labels": labels[sub], "active": module.active.clone(),
                    "alpha": module.alpha.clone(), "n_obs": module.n_obs}, args.dump)
    base = {"data": args.data, "k": args.k, "seed": args.seed, "n_cells": int(adata.n_obs),
            "seconds": round(seconds, 1), "best_epoch": epochs_of(adata)[0],
            "epochs_run": epochs_of(adata)[1], "load": load_average(3), "cpu": cpu_model(),
            "kept_n_used": n_used(kept), "constants": constants}
    rows = {"elbo": moves("elbo"), "demp": moves("demp"), "lobes": moves("lobes"),
            "lobes_t": moves("lobes", **T_RULE)}
    if args.grid:
        for e in EFFECTS:
            for f in FEATURES:
                rows[f"lobes e{e} f{f}"] = moves("lobes", LOBE_EFFECT=e, LOBE_FEATURES=f)
        for g in GUARDS:
            rows[f"lobes t{g}"] = moves("lobes", LOBE_T=g)
    print(json.dumps({**base, "rules": rows, "pairs": pairs}), flush=True)


if __name__ == "__main__":
    main()
