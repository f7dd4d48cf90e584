"""The ``graph`` vs ``elbo`` merge rules on the same fit (as clusters_graph_2026-12-07_dump.py
then ..._eval.py, in one process), plus VAE + Leiden and VAE + BGMM on the same draw, with
the rare type's survival: for the type with the fewest cells, the cluster of best F1 with it
(its F1, recall, precision) and ``rare_own``: a cluster whose cells are mostly that type
holds >= half of its cells. DATA: a `cluster_sets.load` name or ``rare1`` (``rare`` with the
type at 1 %). Run from the repository root::

    OMP_NUM_THREADS=1 nice -n 19 python THIS.py OUT.jsonl DATA K DUMPDIR SEED ...

Each fit's kept weights are pickled to DUMPDIR/DATA_K_SEED.pt; ``--eval OUT.jsonl DUMP.pt ...``
reruns the rules on them. ``--no-baselines`` skips the VAE rows, ``--baselines-only`` runs
only them."""
import copy
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cluster_sets  # noqa: E402
import numpy as np  # noqa: E402
import scanpy  # noqa: E402,F401 - imported before the timed moves
import torch  # noqa: E402
from cluster_sets import USED_SHARE, leiden, n_used  # noqa: E402
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402

import geovae  # noqa: E402
from geovae.modules import graph_merge as gm  # noqa: E402
from geovae.modules.cgmvae import DELETE_CELLS, CGMVAEModule  # noqa: E402
from geovae.modules.deletion import mixture_probs, seeded_subsample  # noqa: E402

ORIGINAL = CGMVAEModule.after_training


def load(data: str, seed: int):
    """`cluster_sets.load`; ``rare1``: the ``rare`` set with its rare type at 1 % (a stress
    case, exploratory)."""
    if data == "rare1":
        cluster_sets.RARE_SHARE = 0.01
        return cluster_sets.load("rare", seed)
    return cluster_sets.load(data, seed)


def rare_stats(labels: np.ndarray, pred: np.ndarray) -> dict:
    """The rarest type's best-F1 cluster: F1, recall, precision, and whether a cluster that is
    mostly the rare type holds >= half of its cells."""
    types, n = np.unique(labels, return_counts=True)
    rare = types[n.argmin()]
    r = labels == rare
    best = (0.0, 0.0, 0.0, None)
    own = False
    for c in np.unique(pred):
        m = pred == c
        tp = int((m & r).sum())
        prec, rec = tp / m.sum(), tp / r.sum()
        f1 = 2 * tp / (m.sum() + r.sum())
        if f1 > best[0]:
            best = (f1, rec, prec, int(m.sum()))
        own |= bool(prec > 0.5 and rec >= 0.5)
    return {"rare_type": str(rare), "rare_cells": int(r.sum()), "rare_f1": round(best[0], 4),
            "rare_recall": round(best[1], 4), "rare_precision": round(best[2], 4),
            "rare_cluster_cells": best[3], "rare_own": own}


def scores(labels: np.ndarray, pred: np.ndarray) -> dict:
    return {"ari": round(float(adjusted_rand_score(labels, pred)), 4),
            "nmi": round(float(normalized_mutual_info_score(labels, pred)), 4),
            "n_used": n_used(pred), **rare_stats(labels, pred)}


def paga_record(module, source, idx, s, labels) -> dict:
    """The gap rule's greedy sequence on the kept weights (as ..._eval.py), with each
    component's majority type, its share and cells."""
    means, ml = gm.posterior_means(module, source, idx, s, DELETE_CELLS)
    lab = mixture_probs(ml, module.active, None).argmax(1).numpy()
    truth = labels[seeded_subsample(idx, DELETE_CELLS, s).cpu().numpy()]
    major = {}
    for c in np.unique(lab):
        t, n = np.unique(truth[lab == c], return_counts=True)
        major[str(c)] = (str(t[n.argmax()]), round(float(n.max() / n.sum()), 3), int(n.sum()))
    _, rec = gm.graph_merge_record(means.numpy(), lab, s)
    _, full = gm.graph_merge_record(means.numpy(), lab, s, threshold=1e-9)
    return {"kept_labels_used": n_used(lab), "major": major, "gap": rec.record(),
            "sequence": [[m, round(c, 4)]
                         for m, c in zip(full.merged, full.connectivity, strict=True)]}


def evaluate(d: dict, out: Path, rules=("elbo", "graph"), tag: dict | None = None) -> None:
    """Each rule's merge then delete moves on the dump's kept weights; one record a rule."""
    model, (source, idx, s), labels = d["model"], d["args"], d["labels"]
    module = model.module
    module.load_state_dict(d["state"])
    kept = scores(labels, model.cluster_probs_of(source).argmax(1))
    for rule in rules:
        module.load_state_dict(d["state"])
        module.merge_rule, module.weights_fixed = rule, d["fixed"]
        t0 = time.process_time()
        ORIGINAL(module, source, idx, s)
        moves_cpu = round(time.process_time() - t0, 2)
        pred = model.cluster_probs_of(source).argmax(1)
        w = module.mixture_weight_means().cpu().numpy()
        rec = {"data": d["data"], "k": d["k"], "seed": d["seed"], "method": f"cgmvae_{rule}",
               **scores(labels, pred), "n_weight": int((w >= USED_SHARE).sum()),
               "kept": {x: kept[x] for x in ("n_used", "ari", "rare_f1", "rare_own")},
               "fit_seconds": round(d["seconds"], 1), "epochs_run": d["epochs_run"],
               "moves_cpu_s": moves_cpu, **(tag or {})}
        if rule == "elbo" and "written" in d:
            rec["matches_fit"] = bool((pred == d["written"]).all())
        if rule == "graph":
            module.load_state_dict(d["state"])
            rec.update(paga_record(module, source, idx, s, labels))
        emit(rec, out)


def emit(rec: dict, out: Path) -> None:
    print(json.dumps({k: v for k, v in rec.items() if k not in ("major", "sequence")}),
          flush=True)
    with out.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def fit(data: str, k: int, seed: int, dump: Path) -> dict:
    adata, kw, truth = load(data, seed)
    saved: dict = {}

    def keep(module, source, idx, s):
        saved.update(state=copy.deepcopy(module.state_dict()), args=(source, idx, s),
                     fixed=module.weights_fixed)
        ORIGINAL(module, source, idx, s)

    CGMVAEModule.after_training = keep
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = geovae.fit(adata, model="cgmvae", model_options={"n_clusters": k},
                               seed=seed, progress=False, device="cpu", heldout_samples=0,
                               batch_key="condition", **kw)
    finally:
        CGMVAEModule.after_training = ORIGINAL
    saved.update(model=model, written=adata.obsm["geovae_cluster_probs"].argmax(1),
                 labels=adata.obs[truth].astype(str).to_numpy(),
                 seconds=time.perf_counter() - t0, data=data, k=k, seed=seed,
                 epochs_run=len(adata.uns["geovae"]["loss_history"]["validation"]))
    torch.save(saved, dump)
    return saved


def baselines(data: str, k: int, seed: int, out: Path) -> None:
    """VAE + Leiden (resolution 1) and VAE + BGMM (Dirichlet process, diagonal, K), as
    bench_clusters.run, on the same draw."""
    from sklearn.mixture import BayesianGaussianMixture

    adata, kw, truth = load(data, seed)
    labels = adata.obs[truth].astype(str).to_numpy()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.fit(adata, model="vae", seed=seed, progress=False, device="cpu",
                   heldout_samples=0, batch_key="condition", **kw)
        vae_s = round(time.perf_counter() - t0, 1)
        latent = adata.obsm["X_geovae"]
        base = {"data": data, "k": k, "seed": seed, "vae_seconds": vae_s}
        emit({**base, "method": "vae_leiden", **scores(labels, leiden(adata, "X_geovae", seed))},
             out)
        bgmm = BayesianGaussianMixture(n_components=k, covariance_type="diag", max_iter=300,
                                       weight_concentration_prior_type="dirichlet_process",
                                       random_state=seed).fit(latent)
        emit({**base, "method": "vae_bgmm", **scores(labels, bgmm.predict(latent)),
              "n_weight": int((bgmm.weights_ >= USED_SHARE).sum())}, out)


def main() -> None:
    args = sys.argv[1:]
    if args[0] == "--eval":
        out = Path(args[1])
        for f in args[2:]:
            evaluate(torch.load(f, weights_only=False), out)
        return
    no_base, only_base = "--no-baselines" in args, "--baselines-only" in args
    args = [a for a in args if a not in ("--no-baselines", "--baselines-only")]
    out, data, k, dumps = Path(args[0]), args[1], int(args[2]), Path(args[3])
    dumps.mkdir(parents=True, exist_ok=True)
    for seed in map(int, args[4:]):
        if not only_base:
            evaluate(fit(data, k, seed, dumps / f"{data}_{k}_{seed}.pt"), out)
        if not no_base:
            baselines(data, k, seed, out)


if __name__ == "__main__":
    main()
