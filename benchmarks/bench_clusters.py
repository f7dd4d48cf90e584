"""Does the unsupervised c*GMΔVAE find the types, and how many there are (issue 24)? The
mixture's ablation against the two-stage VAE + BayesianGaussianMixture and the Leiden
baselines, on development data only.

Run (one thread; each line of ``--json`` is one fit)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_clusters.py --data hard rare blobs \
        --ks truth 15 --seeds 0 1 2 --epochs 60 --json clusters.jsonl
    python benchmarks/bench_clusters.py --summary clusters.jsonl

``--encoder-input log1p log1p_cp10k`` runs every geovae method on count data with each
encoder input (`geovae.modules.vae.ENCODER_INPUTS`, recorded as ``encoder_input``; blobs
are not counts and run once) and pairs them over seeds in the summary.

``--posthoc-rules`` gives the merge-rule rows (`RULE_METHODS`) from one fit per data set, K
and seed, each rule run on the same kept weights (`run_rules`); the summary pairs them
against ``cgmvae_elbo`` and prints the pair diagnostic (`pair_diagnostic`)::

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_clusters.py --data issue2k blobs \
        --methods cgmvae_elbo cgmvae_modes cgmvae_demp --ks 15 20 5 --seeds 0 1 2 3 4 \
        --epochs 0 --posthoc-rules --json rules.jsonl

Data (``seed`` draws the data AND seeds the model, so seeds vary both):

* ``easy`` / ``medium`` / ``hard``: `geovae.datasets.simulate_counts`, 2,000 cells x 300
  genes, 5 types, 3 conditions shifting 20% of the genes (``condition_prob=0.2``); type
  effects on 10% / 7% / 5% of the genes with lognormal scale 1.0 / 0.9 / 0.8. ``rare``: the
  medium level with its first type cut to 2% of the cells. ``issue``: 4,000 x 500 at the
  simulator's defaults (the issue's data); ``issue2k``: the same with 2,000 cells;
  ``medium10``: the medium level with 10 types, 3,000 cells. NB likelihood, batch: condition.
* ``kang`` / ``pbmc68k``: a seeded 90 % subsample of the bundled Kang subset (10 types,
  batch ``stim``) / pbmc68k (``bulk_labels``; no batch) (`cluster_sets.REAL`); ``digits``:
  a seeded 90 % of scikit-learn's digits (1,797 x 64 integer pixels, NB; 10 digits);
  ``kang_full``: `bench_donors.py`'s ``kang_stim`` (3,000 cells of the full Kang data, the
  bundled ones left out, 2,000 HVGs, batch ``stim``, 10 types).
* ``blobs``: `geovae.datasets.make_blobs`, 2,000 cells x 50 features, 5 blobs, 3
  conditions; Gaussian likelihood, ``batch_key="condition"``.

Methods: ``cgmvae`` (the model's defaults, whatever they are), the ablation rows
``cgmvae_<ingredients>`` (`VARIANTS`: every ingredient set explicitly, so a row means the
same when a default changes), ``vae_leiden`` (geovae VAE, kNN graph on ``X_geovae``, Leiden
at resolution 1), ``pca_leiden`` (log-normalised counts / the features as they are, PCA 50,
Leiden 1.0), ``vae_bgmm`` (scikit-learn ``BayesianGaussianMixture``, Dirichlet-process
weights, diagonal, K components, on the VAE's ``X_geovae``; one VAE per data set and seed
serves every K; its seconds include the VAE fit). K = ``truth`` (5; ``medium10``: 10) or a
number (the mixtures; Leiden has no K). Recorded: ARI, NMI of the argmax against the types,
components in use (argmax of >= 0.5% of cells, `geovae.models.cgmvae.USED_SHARE`;
``n_weight``: mixture weight >= 0.5%), fit seconds (wall, on whatever machine: see RESULTS.md
for its state). The summary pairs each mixture's K = truth with its K = 15 (a collapse?).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_record_options, cpu_model, cpus, emit, load_average, runs_wanted  # noqa: E402,I001
from cluster_sets import LEVELS, USED_SHARE, epochs_of, leiden, load, n_types, n_used  # noqa: E402

#: the ablation: c*GMΔVAE model options, every ingredient explicit (`mixture_start`)
OFF = {"warm_start": 0.0, "hold": 0.0, "y_temper": 0.0, "mixture_start": "gmm"}
VARIANTS = {
    "cgmvae_plain": OFF,  # end to end from random weights (geovae <= 0.2.0)
    "cgmvae_warm": {**OFF, "warm_start": 0.5},  # pretrain half, GMM start, no hold
    "cgmvae_warm_hold": {**OFF, "warm_start": 0.5, "hold": 0.25},
    "cgmvae_temper": {**OFF, "y_temper": 0.5},  # q(y|z)'s entropy weighed in over half
    "cgmvae_warm_hold_temper": {"warm_start": 0.5, "hold": 0.25, "y_temper": 0.75},
    "cgmvae_alpha1": {**OFF, "dirichlet_alpha": 1.0},  # a flat Dirichlet instead of 1/K
    # the defaults but the pretraining always runs to its scheduled end (main until e552a8d)
    "cgmvae_noplateau": {"plateau_start": False},
    # the defaults with a sparser Dirichlet prior on the weights (default alpha = 1/K)
    "cgmvae_sparse": {"dirichlet_alpha": 1e-4},
    # the defaults with merges by modality (ridgeline ratio) or by misclassification (DEMP)
    # instead of by the -ELBO (`geovae.modules.merging`)
    "cgmvae_elbo": {"merge_rule": "elbo"},  # the default rule, explicit
    "cgmvae_modes": {"merge_rule": "modes"},
    "cgmvae_demp": {"merge_rule": "demp"},
    "cgmvae_lobes": {"merge_rule": "lobes"},  # DEMP less pairs whose expression differs
    "cgmvae_graph": {"merge_rule": "graph"},  # PAGA on the latent's kNN graph, gap rule
    # the defaults with the mixture started from Leiden clusters / a Bayesian GMM of the latent
    "cgmvae_leidenstart": {"mixture_start": "leiden"}, "cgmvae_gmmstart": {"mixture_start": "gmm"}}
#: rows differing only in the merge rule (`MERGE_RULES`; ``--posthoc-rules``: one fit, `run_rules`)
RULE_METHODS = {f"cgmvae_{rule}": rule for rule in ("elbo", "modes", "demp", "lobes", "graph")}
#: each overlap rule's cutoffs tried on the same kept weights (`run_rules`: ``cutoffs``, ARI,
#: NMI, components in use at each): the grid the development runs chose the cutoffs from
CUTOFFS = {"modes": (0.2, 0.5, 0.8, 0.99), "demp": (0.025, 0.05, 0.1, 0.15, 0.2),
           "lobes": (0.3, 0.5, 0.8, 1.2)}  # "lobes": `LOBE_EFFECT`
METHODS = ("cgmvae", *VARIANTS, "vae_bgmm", "vae_leiden", "pca_leiden")
#: the row every ablation row is paired against, and the two-stage target
BASELINES = ("cgmvae_plain", "vae_bgmm", "vae_leiden")
METRICS = ("ari", "nmi", "n_used", "n_weight", "seconds")
#: (data, seed, epochs, encoder input) -> (VAE latent, VAE seconds, its epochs): one VAE
#: serves every K of vae_bgmm and vae_leiden
_VAE_CACHE: dict[tuple[str, int, int, str | None], tuple[np.ndarray, float]] = {}


def run(data: str, method: str, k: int, seed: int, epochs: int,
        encoder_input: str | None = None) -> dict[str, Any]:
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.mixture import BayesianGaussianMixture

    import geovae

    adata, kw, truth = load(data, seed)
    fit = {"seed": seed, "epochs": epochs or None, "progress": False, "device": "cpu",
           "heldout_samples": 0, "batch_key": "condition", **kw}
    counts = kw["likelihood"] == "nb"
    encoder = {"encoder_input": encoder_input} if encoder_input and counts else {}
    t0 = time.perf_counter()
    n_weight, options, vae_epochs = None, {}, (None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method.startswith("cgmvae"):
            options = {"n_clusters": k, **VARIANTS.get(method, {}), **encoder}
            geovae.fit(adata, model="cgmvae", model_options=options, **fit)
            vae_epochs = epochs_of(adata)
            pred = adata.obsm["geovae_cluster_probs"].argmax(1)
            n_weight = int(adata.uns["geovae"]["n_components_used"])
            options["start_resolution"] = adata.uns["geovae"].get("start_resolution")
        elif method.startswith("vae"):
            key = (data, seed, epochs, encoder_input)
            if key not in _VAE_CACHE:
                geovae.fit(adata, model="vae", model_options=encoder, **fit)
                _VAE_CACHE[key] = (adata.obsm["X_geovae"], time.perf_counter() - t0,
                                   epochs_of(adata))
            latent, vae_seconds, vae_epochs = _VAE_CACHE[key]
            adata.obsm["X_geovae"] = latent
            t0 = time.perf_counter() - vae_seconds
            if method == "vae_leiden":
                pred = leiden(adata, "X_geovae", seed)
            else:
                bgmm = BayesianGaussianMixture(
                    n_components=k, covariance_type="diag", max_iter=300,
                    weight_concentration_prior_type="dirichlet_process",
                    random_state=seed).fit(latent)
                pred = bgmm.predict(latent)
                n_weight = int((bgmm.weights_ >= USED_SHARE).sum())
        else:
            if kw["likelihood"] == "nb":
                sc.pp.normalize_total(adata)
                sc.pp.log1p(adata)
            sc.pp.pca(adata, n_comps=min(50, adata.n_vars - 1), random_state=seed)
            pred = leiden(adata, "X_pca", seed)
    seconds = time.perf_counter() - t0
    labels = adata.obs[truth].to_numpy()
    used = n_used(np.asarray(pred))
    return {"data": data, "method": method, "k": k, "seed": seed, "epochs": epochs,
            "options": options, "n_cells": int(adata.n_obs),
            "ari": float(adjusted_rand_score(labels, pred)),
            "nmi": float(normalized_mutual_info_score(labels, pred)),
            "n_used": used, "n_weight": used if n_weight is None else n_weight,
            "seconds": round(seconds, 1), "best_epoch": vae_epochs[0],
            "epochs_run": vae_epochs[1],
            "encoder_input": (encoder_input or "log1p") if counts and "pca" not in method
            else None,
            "load": load_average(3), "cpus": cpus(), "cpu": cpu_model()}


def run_rules(data: str, methods: list[str], k: int, seed: int, epochs: int,
              encoder_input: str | None = None) -> list[dict[str, Any]]:
    """One record per method of ``methods`` (`RULE_METHODS`) from ONE default c*GMΔVAE fit:
    the kept weights are saved where training ends and each merge rule's moves (then the
    delete moves) run on a copy of them (training never reads the rule: what separate fits
    give). The first record also holds ``pairs``, for every pair of components with >= 0.5%
    of the mass on the kept weights: (i, j, ridge ratio, DEMP, cells whose argmax is i / j,
    their majority type's share, whether i and j have the same majority type, features past
    the "lobes" veto, the largest effect past its t guard); the default rule's
    ``matches_fit``: its clusters are what the fit wrote."""
    import copy

    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    import geovae
    from geovae.modules import merging
    from geovae.modules.cgmvae import DELETE_CELLS, CGMVAEModule
    from geovae.modules.merging import mixture_draws, pair_statistics

    adata, kw, truth = load(data, seed)
    labels = adata.obs[truth].to_numpy()
    fit = {"seed": seed, "epochs": epochs or None, "progress": False, "device": "cpu",
           "heldout_samples": 0, "batch_key": "condition", **kw}
    encoder = ({"encoder_input": encoder_input} if encoder_input and kw["likelihood"] == "nb"
               else {})
    saved: dict[str, Any] = {}
    original = CGMVAEModule.after_training

    def keep(module: Any, source: Any, idx: Any, s: int) -> None:
        saved.update(state=copy.deepcopy(module.state_dict()), args=(source, idx, s),
                     fixed=module.weights_fixed)  # held weights: refreshed after the moves
        original(module, source, idx, s)

    t0 = time.perf_counter()
    CGMVAEModule.after_training = keep
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = geovae.fit(adata, model="cgmvae",
                               model_options={"n_clusters": k, **encoder}, **fit)
    finally:
        CGMVAEModule.after_training = original
    seconds = time.perf_counter() - t0
    module, (source, idx, s) = model.module, saved["args"]
    written = adata.obsm["geovae_cluster_probs"].argmax(1)  # by the module's default rule
    module_default = module.merge_rule
    module.load_state_dict(saved["state"])
    kept = model.cluster_probs_of(source).argmax(1)
    d = mixture_draws(module, source, idx, s, DELETE_CELLS, profiles=True)
    hard = merging.mixture_probs(d["logits"], module.active, None).argmax(1)
    pairs = []
    for i, j, ridge, demp in pair_statistics(d["logits"], d["loc"], d["scale"], module.active):
        sides = []
        for c in (i, j):
            types, n = np.unique(labels[kept == c], return_counts=True)
            sides.append((int(n.sum()), str(types[n.argmax()]) if len(n) else "",
                          float(n.max() / n.sum()) if len(n) else 0.0))
        pairs.append([i, j, round(ridge, 4), round(demp, 4), sides[0][0], sides[1][0],
                      round(sides[0][2], 3), round(sides[1][2], 3),
                      sides[0][1] == sides[1][1]])
        e, t = merging.feature_effect(d["profiles"], hard, i, j)  # the "lobes" rule's veto
        e = e.abs()[t.abs() > merging.LOBE_T].tolist() + [0.0]  # past its noise guard
        pairs[-1] += [sum(v >= merging.LOBE_EFFECT for v in e), round(max(e), 2)]
    def moves(rule: str, cutoff: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(argmax of q(y|x), mixture weights) after ``rule``'s moves on the kept weights,
        at ``cutoff`` (the overlap rules; default the module's constant)."""
        name = {"modes": "RIDGE_RATIO", "demp": "DEMP_CUTOFF", "lobes": "LOBE_EFFECT"}.get(rule)
        default = getattr(merging, name) if name else None
        module.load_state_dict(saved["state"])
        module.merge_rule, module.weights_fixed = rule, saved["fixed"]
        if name and cutoff is not None:
            setattr(merging, name, cutoff)
        try:
            original(module, source, idx, s)
        finally:
            if name:
                setattr(merging, name, default)
        pred = model.cluster_probs_of(source).argmax(1)
        return pred, module.mixture_weight_means().cpu().numpy()

    records = []
    for method in methods:
        pred, weights = moves(RULE_METHODS[method])
        rec = {"data": data, "method": method, "k": k, "seed": seed, "epochs": epochs,
               "options": {"n_clusters": k, **VARIANTS.get(method, {}), **encoder},
               "n_cells": int(adata.n_obs), "posthoc_rule": True,
               "ari": float(adjusted_rand_score(labels, pred)),
               "nmi": float(normalized_mutual_info_score(labels, pred)),
               "n_used": n_used(pred), "n_weight": int((weights >= USED_SHARE).sum()),
               "seconds": round(seconds, 1), "best_epoch": epochs_of(adata)[0],
               "epochs_run": epochs_of(adata)[1],
               "encoder_input": (encoder_input or "log1p") if kw["likelihood"] == "nb" else None,
               "load": load_average(3), "cpus": cpus(), "cpu": cpu_model()}
        if method == methods[0]:
            rec.update(pairs=pairs, kept_n_used=n_used(kept))
        if RULE_METHODS[method] == module_default:
            rec["matches_fit"] = bool((pred == written).all())
        for cutoff in CUTOFFS.get(RULE_METHODS[method], ()):  # the cutoff's development grid
            p, _ = moves(RULE_METHODS[method], cutoff)
            rec.setdefault("cutoffs", {})[str(cutoff)] = [
                round(float(adjusted_rand_score(labels, p)), 4),
                round(float(normalized_mutual_info_score(labels, p)), 4), n_used(p)]
        records.append(rec)
    return records


def summarise(path: Path) -> None:
    from paired_stats import mean_sd, paired, table

    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in recs:  # records from before --encoder-input: the geovae rows read log1p
        r.setdefault("encoder_input", None if r["method"] == "pca_leiden" else "log1p")
    # a fit run twice (a restarted run): the last record counts
    recs = list({(r["data"], r["method"], r["k"], r["seed"], r["encoder_input"]): r
                 for r in recs}.values())
    inputs = sorted({r["encoder_input"] for r in recs if r["encoder_input"]})
    rows = []
    for data in dict.fromkeys(r["data"] for r in recs):
        for k in sorted({r["k"] for r in recs if r["data"] == data}):
            rs = [r for r in recs if r["data"] == data and (r["k"] == k or "leiden" in
                                                             r["method"])]
            seeds = sorted({r["seed"] for r in rs})
            print(f"\n#### {data}, K = {k} (truth {n_types(data)}; seeds {seeds}; "
                  f"{rs[0]['epochs'] or 'default'} epochs)\n")
            print("| method | n | " + " | ".join(METRICS) + " | in use within ±1 |")
            print("|---|---|" + "---|" * (len(METRICS) + 1))
            for m in METHODS:
                for ei in dict.fromkeys(r["encoder_input"] for r in rs if r["method"] == m):
                    sel = [r for r in rs if r["method"] == m and r["encoder_input"] == ei]
                    cells = [mean_sd([r[x] for r in sel], 1 if x == "seconds" else 2)
                             for x in METRICS]
                    hits = sum(abs(r["n_used"] - n_types(data)) <= 1 for r in sel)
                    label = m + (f" [{ei}]" if len(inputs) > 1 and ei else "")
                    print(f"| {label}{' (no K)' if 'leiden' in m else ''} | {len(sel)} | "
                          + " | ".join(cells) + f" | {hits} of {len(sel)} |")
            for m in METHODS:  # each encoder input against log1p, same method and seeds
                b = {r["seed"]: r for r in rs if r["method"] == m
                     and r["encoder_input"] == "log1p"}
                for ei in (e for e in inputs if e != "log1p"):
                    a = {r["seed"]: r for r in rs if r["method"] == m
                         and r["encoder_input"] == ei}
                    common = sorted(set(a) & set(b))
                    if len(common) >= 2:
                        for x in ("ari", "nmi", "n_used"):
                            rows.append((f"{data} K={k}: {x}", f"{m} [{ei}]", "[log1p]",
                                         paired([a[s][x] for s in common],
                                                [b[s][x] for s in common])))
            plain = [r for r in rs if r["encoder_input"] in ("log1p", None)]
            # the merge rules against the -ELBO rule (same fit with --posthoc-rules)
            b = {r["seed"]: r for r in plain if r["method"] == "cgmvae_elbo"}
            for m in (m for m in RULE_METHODS if m != "cgmvae_elbo"):
                a = {r["seed"]: r for r in plain if r["method"] == m}
                common = sorted(set(a) & set(b))
                if len(common) >= 2:
                    for x in ("ari", "nmi", "n_used"):
                        rows.append((f"{data} K={k}: {x}", m, "cgmvae_elbo",
                                     paired([a[s][x] for s in common],
                                            [b[s][x] for s in common])))
            for base in BASELINES:
                b = {r["seed"]: r for r in plain if r["method"] == base}
                for m in (m for m in METHODS if m.startswith("cgmvae") and m != base):
                    a = {r["seed"]: r for r in plain if r["method"] == m}
                    common = sorted(set(a) & set(b))
                    if len(common) >= 2:
                        for x in ("ari", "n_used"):
                            rows.append((f"{data} K={k}: {x}", m, base,
                                         paired([a[s][x] for s in common],
                                                [b[s][x] for s in common])))
        # K = truth against K = 15, same method and seeds: does the fit collapse at the truth?
        same = [r for r in recs if r["data"] == data and r["encoder_input"] in ("log1p", None)]
        for m in dict.fromkeys(r["method"] for r in same if "leiden" not in r["method"]):
            a, b = ({r["seed"]: r["ari"] for r in same if r["method"] == m and r["k"] == k}
                    for k in (n_types(data), 15))
            if len(common := sorted(set(a) & set(b))) >= 2:
                rows.append((f"{data}: ari", f"{m} K={n_types(data)}", f"{m} K=15",
                             paired([a[s] for s in common], [b[s] for s in common])))
    print()
    print("\n".join(table(rows)))
    pair_diagnostic(recs)


def pair_diagnostic(recs: list[dict[str, Any]]) -> None:
    """The merge rules' diagnostic (`run_rules`' ``pairs``): per data set and K, the ridge
    ratio and DEMP of pairs of components whose cells are mostly the same type (a type split
    in two: to merge) and of pairs of two types (to keep). A cutoff separates them where the
    lowest of the first is above the highest of the second."""
    groups: dict[tuple[str, int], list[list[Any]]] = {}
    for r in recs:
        for p in r.get("pairs", []):
            if min(p[4], p[5]) >= max(1, USED_SHARE * r["n_cells"]):  # both in use
                groups.setdefault((r["data"], r["k"]), []).append(p)
    if groups:
        print("\n| data | K | pairs, same type: n, ridge ratio min / median, DEMP min / median | "
              "pairs, two types: n, ridge ratio max, DEMP max | features past the veto: same "
              "max, two min |\n" + "|---" * 5 + "|")
    for (data, k), ps in groups.items():
        same = [p for p in ps if p[8]]
        other = [p for p in ps if not p[8]]
        cell = [f"{len(same)}, {min(p[2] for p in same):.3f} / "
                f"{np.median([p[2] for p in same]):.3f}, {min(p[3] for p in same):.3f} / "
                f"{np.median([p[3] for p in same]):.3f}" if same else "0"]
        cell.append(f"{len(other)}, {max(p[2] for p in other):.3f}, "
                    f"{max(p[3] for p in other):.3f}" if other else "0")
        lobes = (max((p[9] for p in same if len(p) > 9), default="-"),
                 min((p[9] for p in other if len(p) > 9), default="-"))
        print(f"| {data} | {k} | {cell[0]} | {cell[1]} | {lobes[0]}, {lobes[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=["hard", "rare", "blobs"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--ks", nargs="+", default=["truth", "15"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=60,
                    help="0: each model's default (`default_epochs`, early stopping)")
    ap.add_argument("--encoder-input", nargs="+", default=["log1p"],
                    choices=["log1p", "log1p_cp10k"],
                    help="count data: run the geovae methods with each encoder input "
                         "(paired against log1p in the summary)")
    ap.add_argument("--n-cells", type=int, default=None,
                    help="draw this many cells instead of the level's (simulations)")
    ap.add_argument("--posthoc-rules", action="store_true",
                    help="the merge-rule rows (`RULE_METHODS`) from one fit per data set, K "
                         "and seed, each rule on its kept weights")
    add_record_options(ap)
    args = ap.parse_args()
    if not runs_wanted(args, summarise):
        return
    for level in LEVELS.values() if args.n_cells else ():
        level["n_cells"] = args.n_cells
    for data in args.data:
        ks = [n_types(data) if k == "truth" else int(k) for k in args.ks]
        for seed in args.seeds:
            methods = list(args.methods)
            rules = [m for m in methods if m in RULE_METHODS] if args.posthoc_rules else []
            for k in ks if rules else ():  # one fit, every merge rule (`run_rules`)
                for ei in (args.encoder_input if data != "blobs" else [None]):
                    for rec in run_rules(data, rules, k, seed, args.epochs, ei):
                        emit(rec, args.json)
            for method in (m for m in methods if m not in rules):
                # Leiden has no K: one run per seed, shown beside every K
                for k in (ks[:1] if method in ("vae_leiden", "pca_leiden") else ks):
                    counts = data != "blobs" and method != "pca_leiden"
                    for ei in (args.encoder_input if counts else [None]):
                        emit(run(data, method, k, seed, args.epochs, ei), args.json)


if __name__ == "__main__":
    main()
