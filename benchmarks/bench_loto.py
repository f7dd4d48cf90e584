"""Leave-one-type-out benchmark of `geovae transfer`'s labels and "unknown" call (issue 23).

Development vs report split: the default novelty check (`geovae.tools.novelty.novelty_pvalues`)
and its constants (NOVELTY_TAIL, VOTE_POWER; before it DEPTH_WINDOW, MIN_DEPTH_WINDOW,
DEPTH_TAIL) were chosen on the bundled Kang subset (data/kang_counts.h5ad, 3,000 cells;
``--dev``). The REPORTED pairs use only cells that never chose a setting:

* ``kang_ctrl_stim`` / ``kang_stim_ctrl``: the full Kang et al. 2018 data
  (``data/build_data.py:load_full_kang``) minus the 3,000 bundled cells (by cell name):
  4,859 CTRL and 5,717 STIM cells; genes: ``--n-top-genes`` HVGs chosen on the reference cells
  (after the type is left out; `bench_transfer.reference_hvgs`).
* ``kang_pbmc68k`` (cross-study): reference = the same Kang CTRL report cells, query = the
  bundled pbmc68k (700 cells, another lab and donor, 10x v1), on the genes both have; labels
  harmonised by `KANG_TO_SHARED` / `PBMC_TO_SHARED`. A type without a counterpart on the other
  side (Kang's CD16 Mono and T activated, pbmc68k's CD34+) stays as it is: in the query it is
  unseen in every run.

Per seed, each side keeps min(``--cap``, 80 %) of every type's cells, drawn with the seed
(so every type is resampled), and the seed also seeds the models. Every type with at least
``--min-ref`` cells in the subsampled reference and ``--min-query`` in the query is left out
of the reference in turn; the unseen cells are the query cells of every type the reference
lacks. geovae: ``geovae.fit(ref, batch_key, label_key, epochs=--epochs)`` (vae, Euclidean;
heldout_samples 0) then ``geovae.transfer(query, model, epochs=--query-epochs)`` with the
CLI's defaults (``--freeze all``, no ``--reference``: the model's training cells calibrate
the check; threshold 0.5), one thread. scANVI (`bench_transfer.SCANVI_SCRIPT`, scvi-tools
venv ``GEOVAE_SCVI_PYTHON``, one thread): ``scANVI (budget)`` = scvi's defaults with early
stopping, every stage also stopped at geovae's fit + map seconds of the same run
(60/15/25 %); ``scANVI (defaults)`` = scvi's default max_epochs heuristic and early stopping
for SCVI, SCANVI and the query, no time limit (slow: ``--defaults-seeds``).

Per run and method: AUROC of (1 - confidence) for unseen vs known-type query cells; beside
it library size alone (log total counts, both directions, the better) and the classifier's
maximum probability alone (geovae: the label probabilities before the novelty factor;
scANVI: its confidence is its max probability); accuracy of the label with "unknown" (confidence
< 0.5) counted wrong on known-type cells and of the argmax label, macro-F1 of both over all
query cells (unseen cells' true label "unknown"), known-type accuracy among cells not called
unknown, the unknown call's precision and recall, and the partial Spearman r of confidence
with log library size given the predicted type among known-type cells (target |r| < 0.1).
The tables score the labels users get: ``geovae_label`` for geovae, ``predict()`` (argmax,
no unknown call) for scANVI.

``--dev`` runs the same protocol on the development split (the bundled subset, Kang pairs,
120 cells per type and side): where the novelty score and its constants are chosen. Every
geovae run also scores the candidate novelty scores of `loto_scores.py` from its one fit
(``p_auroc:<name>``, ``p_r:<name>``, ...; ``--candidates`` tabulates them; ``--save-arrays``
keeps each run's latent, -ELBO, depth and votes so ``--rescore`` recomputes them).
``--model-kw KEY=VALUE`` refits geovae with a keyword of ``geovae.fit`` or a model option
(``encoder_input=log1p_cp10k``); give each setting its own ``--out`` and ``--save-arrays``
(`loto_latent.py` pairs two such folders run by run).

Runs go to a JSON-lines record, one line per run and method, re-read before every run, so
several processes can share one record (``--shard``, ``--phase``, ``--reverse``, ``--wait``)
and a partial record still gives a table::

    nice -n 10 python benchmarks/bench_loto.py --out loto.jsonl --shard 0/2 &   # and 1/2
    nice -n 10 python benchmarks/bench_loto.py --out loto.jsonl --phase 3 --wait &
    python benchmarks/bench_loto.py --table loto.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import f1_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SCVI_PYTHON  # noqa: E402
from bench_transfer import SCANVI_SCRIPT, THREAD_ENV, reference_hvgs  # noqa: E402
from loto_scores import candidate_metrics, ppc_zscore  # noqa: E402
from paired_stats import fmt_p, mean_sd, paired  # noqa: E402

PAIRS = ("kang_ctrl_stim", "kang_stim_ctrl", "kang_pbmc68k")
#: Kang's seurat_annotations and pbmc68k's bulk_labels, named alike where they match
KANG_TO_SHARED = {"B": "B", "B Activated": "B", "CD4 Memory T": "CD4 T", "CD4 Naive T": "CD4 T",
                  "CD8 T": "CD8 T", "CD14 Mono": "CD14 Mono", "DC": "DC", "NK": "NK"}
PBMC_TO_SHARED = {"CD19+ B": "B", "CD4+/CD25 T Reg": "CD4 T", "CD4+/CD45RO+ Memory": "CD4 T",
                  "CD4+/CD45RA+/CD25- Naive T": "CD4 T", "CD8+ Cytotoxic T": "CD8 T",
                  "CD8+/CD45RA+ Naive Cytotoxic": "CD8 T", "CD14+ Monocyte": "CD14 Mono",
                  "Dendritic": "DC", "CD56+ NK": "NK"}
GEOVAE, BUDGET, DEFAULTS = "geovae", "scANVI (budget)", "scANVI (defaults)"


def report_cells() -> ad.AnnData:
    """Full Kang cells that are not in the bundled (development) subset; obs type, batch."""
    sys.path.insert(0, str(ROOT / "data"))
    from build_data import load_full_kang

    full = load_full_kang()
    dev = ad.read_h5ad(ROOT / "data" / "kang_counts.h5ad", backed="r").obs_names
    full = full[~full.obs_names.isin(dev)].copy()
    full.obs["type"] = full.obs["seurat_annotations"].astype(str)
    full.obs["batch"] = full.obs["stim"].astype(str)
    return full


def dev_cells() -> ad.AnnData:
    """The development split: the bundled Kang subset (data/kang_counts.h5ad, 3,000 cells,
    150 per type and condition), obs type, batch. Only Kang pairs; it chose the constants."""
    dev = ad.read_h5ad(ROOT / "data" / "kang_counts.h5ad")
    dev.obs["type"] = dev.obs["seurat_annotations"].astype(str)
    dev.obs["batch"] = dev.obs["stim"].astype(str)
    return dev


def draw(adata: ad.AnnData, cap: int, rng: np.random.Generator) -> ad.AnnData:
    """min(cap, 80 %) of each type's cells, without replacement (the seed's data draw)."""
    keep = []
    types = adata.obs["type"].to_numpy()
    for t in np.unique(types):
        idx = np.flatnonzero(types == t)
        keep.append(rng.choice(idx, min(cap, int(round(0.8 * len(idx)))), replace=False))
    return adata[np.sort(np.concatenate(keep))].copy()


def pair_draw(kang: ad.AnnData, pair: str, seed: int, cap: int) -> tuple[ad.AnnData, ad.AnnData]:
    """(reference, query) of one pair and seed, all genes of the pair."""
    rng = np.random.default_rng(seed)
    ctrl = draw(kang[kang.obs["batch"] == "CTRL"], cap, rng)
    if pair == "kang_pbmc68k":
        pbmc = ad.read_h5ad(ROOT / "data" / "pbmc68k_counts.h5ad")
        pbmc.obs["type"] = [PBMC_TO_SHARED.get(t, t) for t in pbmc.obs["bulk_labels"].astype(str)]
        pbmc.obs["batch"] = "pbmc68k"
        genes = ctrl.var_names.intersection(pbmc.var_names)
        ref = ctrl[:, genes].copy()
        ref.obs["type"] = [KANG_TO_SHARED.get(t, t) for t in ref.obs["type"]]
        return ref, draw(pbmc, cap, rng)[:, genes].copy()
    stim = draw(kang[kang.obs["batch"] == "STIM"], cap, rng)
    return (ctrl, stim) if pair == "kang_ctrl_stim" else (stim, ctrl)


def check_pairs(pairs: list[str] | None, dev: bool) -> list[str]:
    """The pairs to run: all of `PAIRS` by default, the Kang pairs with ``dev``; exits with a
    one-line error for an unknown pair or pbmc68k with ``dev`` (its cells are reported)."""
    kang = [q for q in PAIRS if q != "kang_pbmc68k"]
    pairs = pairs or (kang if dev else list(PAIRS))
    bad = [q for q in pairs if q not in (kang if dev else PAIRS)]
    if bad:
        print(f"error: --pairs {','.join(bad)}: use {', '.join(kang if dev else PAIRS)}"
              + (" (pbmc68k is a reported query: never on the development split)"
                 if dev else ""), file=sys.stderr)
        sys.exit(2)
    return pairs


def partial_spearman(score: np.ndarray, depth: np.ndarray, groups: np.ndarray) -> float:
    """Spearman correlation of ``score`` and ``depth`` given ``groups``: the ranks' residuals
    after removing each group's mean rank."""
    r1, r2 = stats.rankdata(score), stats.rankdata(depth)
    for g in np.unique(groups):
        m = groups == g
        r1[m] -= r1[m].mean()
        r2[m] -= r2[m].mean()
    den = np.sqrt((r1 ** 2).sum() * (r2 ** 2).sum())
    return float((r1 * r2).sum() / den) if den > 0 else float("nan")


def score(truth: np.ndarray, pred: np.ndarray, conf: np.ndarray, maxprob: np.ndarray,
          depth: np.ndarray, ref_types: set[str], threshold: float = 0.5) -> dict:
    """The metrics of one method on one run (see the module docstring)."""
    novel = ~np.isin(truth, sorted(ref_types))
    known = ~novel
    unknown = conf < threshold
    called = np.where(unknown, "unknown", pred)
    lib = roc_auc_score(novel, depth)
    return {
        "auroc": roc_auc_score(novel, -conf),
        "auroc_library": max(lib, 1 - lib), "library_direction": "high" if lib >= 0.5 else "low",
        "auroc_maxprob": roc_auc_score(novel, -maxprob),
        "partial_r_depth": partial_spearman(conf[known], depth[known], pred[known]),
        "accuracy_user": float(np.mean(called[known] == truth[known])),
        "accuracy_argmax": float(np.mean(pred[known] == truth[known])),
        "accuracy_known_called": float(np.mean((called == truth)[known & ~unknown])),
        "macro_f1_user": float(f1_score(np.where(novel, "unknown", truth), called,
                                        average="macro")),
        "macro_f1_argmax": float(f1_score(np.where(novel, "unknown", truth), pred,
                                          average="macro")),
        "unknown_precision": float(novel[unknown].mean()) if unknown.any() else float("nan"),
        "unknown_recall": float(unknown[novel].mean()),
        "known_called_unknown": float(unknown[known].mean()),
    }


def run_geovae(ref: ad.AnnData, query: ad.AnnData, seed: int, args) -> tuple[dict, float]:
    import geovae
    from geovae import _keys as K

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_kw, model_options = split_model_kw(args.model_kw)
        model = geovae.fit(ref, batch_key="batch", label_key="type", seed=seed,
                           epochs=args.epochs, progress=False, heldout_samples=0, threads=1,
                           model_options=model_options or None, **fit_kw)
        mapped = geovae.transfer(query, model, epochs=args.query_epochs, seed=seed,
                                 progress=False, threads=1)
    sec = time.perf_counter() - t0
    probs = np.asarray(query.obsm[K.LABEL_PROBS])
    cats = np.asarray(list(mapped.spec.label_categories), dtype=str)
    cells, n_ref = mapped.reference_cells, ref.n_obs  # the reference's cells, then the query's
    arrays = {"z": np.asarray(query.obsm[K.REP]), "nelbo": cells.nelbo[n_ref:],
              "depth": cells.log_library[n_ref:], "pred_code": probs.argmax(1),
              "maxprob": probs.max(1), "ref_z": cells.latent[:n_ref],
              "ref_labels": cells.labels[:n_ref], "ref_nelbo": cells.nelbo[:n_ref],
              "ref_depth": cells.log_library[:n_ref],
              "ppc": ppc_zscore(mapped, mapped.source()), "ref_ppc": ppc_zscore(model,
                                                                                model.source())}
    return {"pred": cats[probs.argmax(1)], "conf": query.obs[K.LABEL_CONFIDENCE].to_numpy(),
            "maxprob": probs.max(1), "arrays": arrays,
            "unknown": query.obs[K.LABEL].astype(str).to_numpy() == "unknown"}, sec


def parse_model_kw(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--model-kw``: the value read as JSON where it parses (numbers,
    true/false, lists), else kept as a string (``encoder_input=log1p_cp10k``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--model-kw takes KEY=VALUE, not {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def split_model_kw(model_kw: dict | None) -> tuple[dict, dict]:
    """(keywords of `geovae.fit`, the rest as its ``model_options``): ``latent_dim=20`` is a
    fit keyword, ``encoder_input=log1p_cp10k`` a model option (the module's keyword)."""
    import inspect

    import geovae

    fit_params = set(inspect.signature(geovae.fit).parameters)
    fit_kw = {k: v for k, v in (model_kw or {}).items() if k in fit_params}
    return fit_kw, {k: v for k, v in (model_kw or {}).items() if k not in fit_params}


def run_scanvi(ref: ad.AnnData, query: ad.AnnData, seed: int, mode: str, workdir: Path
               ) -> tuple[dict | None, float, str]:
    """scANVI through `bench_transfer.SCANVI_SCRIPT` in the scvi-tools venv."""
    paths = []
    for name, a in (("ref", ref), ("query", query)):
        obs = pd.DataFrame({"stim": a.obs["batch"].astype(str).to_numpy(),
                            "seurat_annotations": a.obs["type"].astype(str).to_numpy()},
                           index=a.obs_names)
        p = workdir / f"{name}.h5ad"
        ad.AnnData(X=a.X.copy(), obs=obs, var=pd.DataFrame(index=a.var_names)).write_h5ad(p)
        paths.append(p)
    out = workdir / "scanvi.npz"
    out.unlink(missing_ok=True)
    env = {**os.environ, **THREAD_ENV, "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    for drop_last in ("0", "1"):
        run = subprocess.run([SCVI_PYTHON, "-c", SCANVI_SCRIPT, *map(str, paths), str(out),
                              str(seed), "0", "0", "0", drop_last, mode], env=env,
                             capture_output=True, text=True, check=False)
        if run.returncode == 0 and out.exists():
            break
    wall = time.perf_counter() - t0
    if not out.exists():
        return None, wall, " | ".join((run.stderr or run.stdout).strip().splitlines()[-2:])
    with np.load(out) as d:
        res = {"pred": d["pred"].astype(str), "conf": d["conf"], "maxprob": d["conf"],
               "sec": float(d["sec"]), "info": str(d["info"])}
    return res, wall, ""


def tasks(kang: ad.AnnData, args) -> list[tuple[str, int, str, ad.AnnData, ad.AnnData]]:
    """(pair, seed, held-out type, reference without it, query), seed-major."""
    out = []
    for seed in args.seeds:
        for pair in args.pairs:
            ref, query = pair_draw(kang, pair, seed, args.cap)
            n_ref, n_q = ref.obs["type"].value_counts(), query.obs["type"].value_counts()
            for t in sorted(n_ref.index):
                if n_ref[t] >= args.min_ref and n_q.get(t, 0) >= args.min_query and \
                        (not args.types or t in args.types):
                    out.append((pair, seed, t, ref, query))
    return out


def run_all(args) -> None:
    kang = dev_cells() if args.dev else report_cells()
    todo = tasks(kang, args)
    shard, n_shards = (int(x) for x in args.shard.split("/"))
    scvi_ok = Path(SCVI_PYTHON).exists()
    # phase 1: geovae on every run, seed by seed; phase 2: scANVI (budget) on every run, then
    # scANVI (defaults) on the --defaults-seeds runs, both a type of each pair over the seeds
    # at a time (a partial phase still pairs the seeds within each pair)
    rank: dict[tuple[str, int], int] = {}
    keys = []
    for j, t in enumerate(todo):
        k = rank[t[:2]] = rank.get(t[:2], -1) + 1
        keys.append((k, t[1], args.pairs.index(t[0]), j))
    by_type = [todo[j] for *_, j in sorted(keys)]
    queue = [(t, GEOVAE) for t in todo] * (args.phase in (0, 1))
    if scvi_ok and args.phase != 1:
        queue += [(t, BUDGET) for t in by_type]
        queue += [(t, DEFAULTS) for t in by_type if t[1] in args.defaults_seeds] * \
            (args.phase != 3)
    queue = [q for i, q in enumerate(queue) if i % n_shards == shard][::-1 if args.reverse else 1]
    while queue:  # with --wait, the budget runs whose geovae run another process still owes
        queue = run_queue(queue, args)
        if queue and not args.wait:
            break
        time.sleep(30 if queue else 0)


def run_queue(queue: list, args) -> list:
    """Run what can run now; return the budget runs still waiting for geovae's seconds."""
    waiting = []
    for item in queue:
        (pair, seed, held_out, ref_all, query_all), method = item
        done = recorded(args.out)
        key = (pair, seed, held_out)
        if (*key, method) in done:
            continue
        if method == BUDGET and (*key, GEOVAE) not in done:
            waiting.append(item)
            continue
        ref, query = run_split(ref_all, query_all, pair, held_out, args.n_top_genes)
        truth = query.obs["type"].astype(str).to_numpy()
        depth = np.log1p(np.asarray(query.X.sum(1)).ravel())
        ref_types = set(ref.obs["type"].astype(str))
        rec = {"pair": pair, "seed": seed, "held_out": held_out, "n_ref": ref.n_obs,
               "n_query": query.n_obs, "n_unseen": int((~np.isin(truth, sorted(ref_types)))
                                                      .sum()), "n_genes": ref.n_vars,
               "method": method}
        if method == GEOVAE:
            res, sec = run_geovae(ref, query, seed, args)
            rec.update(epochs=args.epochs, query_epochs=args.query_epochs, fit_map_s=sec,
                       model_kw=args.model_kw or None)
        else:  # budget: geovae's fit + map seconds of the same run
            mode = "defaults" if method == DEFAULTS else f"budget={done[(*key, GEOVAE)]:.1f}"
            with tempfile.TemporaryDirectory() as tmp:
                res, wall, err = run_scanvi(ref, query, seed, mode, Path(tmp))
            rec.update(wall_s=wall, mode=mode)
            if res is None:
                emit({**rec, "error": err}, args.out)
                continue
            rec.update(fit_map_s=res["sec"], info=res["info"])
        rec.update(score(truth, res["pred"], res["conf"], res["maxprob"], depth, ref_types))
        if "arrays" in res:  # every candidate novelty score from this one fit (loto_scores)
            arrays = {**res["arrays"], "novel": ~np.isin(truth, sorted(ref_types))}
            rec.update(candidate_metrics(arrays, partial_spearman))
            if args.save_arrays is not None:
                args.save_arrays.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(args.save_arrays / f"{pair}_{seed}_{held_out}.npz",
                                    **arrays)
        if "unknown" in res:  # the call geovae writes is the one scored (threshold 0.5)
            rec["unknown_label_agrees"] = float(np.mean(res["unknown"] == (res["conf"] < 0.5)))
        emit(rec, args.out)
    return waiting


def recorded(path: Path) -> dict[tuple, float]:
    """(pair, seed, held-out type, method) -> fit + map seconds of the runs ``path`` holds
    (other shards' too)."""
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {(r["pair"], r["seed"], r["held_out"], r["method"]): r.get("fit_map_s", 0.0)
            for r in rows}


def emit(rec: dict, path: Path) -> None:
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rec.items()}),
          flush=True)
    with path.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def load(path: Path) -> pd.DataFrame:
    """The records of ``path``, failed runs and repeats (first kept) dropped."""
    recs = pd.DataFrame([json.loads(x) for x in path.read_text().splitlines()])
    if "error" in recs:
        recs = recs[recs["error"].isna()]
    return recs.drop_duplicates(["pair", "seed", "held_out", "method"])


def seed_means(recs: pd.DataFrame, method: str, runs: pd.DataFrame | None = None
               ) -> pd.DataFrame:
    """Per pair and seed, ``method``'s means over its held-out types (only the (pair, seed,
    type) runs in ``runs`` where given: the same runs for every method compared)."""
    g = recs[recs["method"] == method]
    if runs is not None:
        g = g.merge(runs, on=["pair", "seed", "held_out"])
    return g.groupby(["pair", "seed"]).mean(numeric_only=True)


def table(path: Path) -> str:
    """Markdown tables: per pair and method, mean ± sd over seeds of the per-seed means over
    the held-out types; paired t-tests over seeds; the per-type AUROCs."""
    recs = load(path)
    # the labels users get: geovae_label (unknown counted wrong), scANVI's predict() (argmax)
    scanvi = recs["method"] != GEOVAE
    for c in ("accuracy", "macro_f1"):
        recs[f"{c}_labels"] = recs[f"{c}_user"].where(~scanvi, recs.get(f"{c}_argmax"))
    key = ["pair", "seed", "held_out"]
    # geovae's summary rows and tests: only the seeds that hold every type of their pair
    geo = recs[recs["method"] == GEOVAE]
    n_types = geo.groupby(["pair", "seed"])["held_out"].transform("nunique")
    full = n_types == geo.groupby("pair")["held_out"].transform("nunique")
    partial, geo = geo[~full], geo[full]
    every = recs  # the comparisons with scANVI pair runs, complete seeds or not
    recs = pd.concat([geo, recs[recs["method"] != GEOVAE]])
    out = ["| pair | method | runs (seeds) | unseen AUROC | library size | max prob | "
           "acc. of users' labels | macro-F1 | acc. of called | unknown P / R | "
           "partial r (range) | fit + map s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (pair, method), g in recs.groupby(["pair", "method"], sort=True):
        s = g.groupby("seed").mean(numeric_only=True)

        def ms(c: str, g=g, s=s) -> str:
            if len(s) > 1:
                return mean_sd(s[c], 2)
            return f"{g[c].mean():.2f}" if g[c].notna().any() else "n/a"
        r = g["partial_r_depth"]
        out.append(f"| {pair} | {method} | {len(g)} ({len(s)}) | {ms('auroc')} | "
                   f"{ms('auroc_library')} | {ms('auroc_maxprob')} | {ms('accuracy_labels')} | "
                   f"{ms('macro_f1_labels')} | {ms('accuracy_known_called')} | "
                   f"{g['unknown_precision'].mean():.2f} / {g['unknown_recall'].mean():.2f} | "
                   f"{r.mean():+.2f} ({r.min():+.2f}, {r.max():+.2f}) | "
                   f"{g['fit_map_s'].mean():.0f} |")
    out += ["", "| pair | A − B, per-seed means over the same runs | runs | mean diff | "
            "paired t p |", "|---|---|---|---|---|"]
    for pair in sorted(geo["pair"].unique()):
        s = seed_means(recs, GEOVAE).loc[pair]
        for name, a, b in (("AUROC − library size", s["auroc"], s["auroc_library"]),
                           ("AUROC − (library size + 0.10)", s["auroc"],
                            s["auroc_library"] + 0.10),
                           ("AUROC − max prob", s["auroc"], s["auroc_maxprob"]),
                           ("AUROC − the check before (depth −ELBO × votes, same fits)",
                            s["auroc"], s.get("c_auroc:depth_elbo", s["auroc"] * np.nan))):
            if b.isna().all():
                continue
            r = paired(a.to_numpy(), b.to_numpy())
            out.append(f"| {pair} | {name} | {len(geo[geo['pair'] == pair])} | "
                       f"{r['diff']:+.3f} | {fmt_p(r['p_t'])} |")
        for method in (BUDGET, DEFAULTS):
            runs = every[(every["pair"] == pair) & (every["method"] == method)][key].merge(
                every[every["method"] == GEOVAE][key])
            if runs.empty:
                continue
            sa, sb = seed_means(every, GEOVAE, runs), seed_means(every, method, runs)
            for c in ("accuracy_labels", "macro_f1_labels", "auroc"):
                r = paired(sa[c].to_numpy(), sb[c].to_numpy())
                out.append(f"| {pair} | geovae − {method}: {c} | {len(runs)} | "
                           f"{r['diff']:+.3f} | {fmt_p(r['p_t'])} |")
    out += ["", f"Mean unseen AUROC over the {len(geo)} geovae runs: {geo['auroc'].mean():.3f}"
            f" (library size {geo['auroc_library'].mean():.3f}, max prob "
            f"{geo['auroc_maxprob'].mean():.3f}); runs with |partial r| >= 0.1: "
            f"{int((geo['partial_r_depth'].abs() >= 0.1).sum())}. Left out of the geovae "
            f"rows (a seed with some types only): {len(partial)} runs.", "",
            "| pair | held out | seeds | AUROC | library size (direction) | max prob | "
            "scANVI (budget) |", "|---|---|---|---|---|---|---|"]
    bud = recs[recs["method"] == BUDGET].set_index(key)["auroc"]
    for (pair, t), g in geo.groupby(["pair", "held_out"]):
        b = bud.reindex([(pair, sd_, t) for sd_ in g["seed"]]).dropna()
        out.append(f"| {pair} | {t} | {len(g)} | {g['auroc'].mean():.2f} | "
                   f"{g['auroc_library'].mean():.2f} ({g['library_direction'].mode()[0]}) | "
                   f"{g['auroc_maxprob'].mean():.2f} | "
                   f"{f'{b.mean():.2f} ({len(b)})' if len(b) else '–'} |")
    return "\n".join(out)


def rescore(folder: Path) -> pd.DataFrame:
    """Candidate metrics recomputed from saved run arrays (``--save-arrays``)."""
    rows = []
    for f in sorted(folder.glob("*.npz")):
        pair, seed, held_out = f.stem.rsplit("_", 2)
        with np.load(f) as d:
            arrays = dict(d)
        lib = roc_auc_score(arrays["novel"], arrays["depth"])
        rows.append({"pair": pair, "seed": int(seed), "held_out": held_out, "method": GEOVAE,
                     "auroc_library": max(lib, 1 - lib),
                     "auroc_maxprob": roc_auc_score(arrays["novel"], -arrays["maxprob"]),
                     **candidate_metrics(arrays, partial_spearman)})
    return pd.DataFrame(rows)


def candidate_table(recs: pd.DataFrame) -> str:
    """Per candidate score: mean AUROC per pair (and over all runs), the partial r with
    depth (mean, largest |r|, runs with |r| >= 0.1), for its p-value and its confidence."""
    geo = recs[recs["method"] == GEOVAE]
    names = [c.split(":", 1)[1] for c in geo.columns if c.startswith("p_auroc:")]
    pairs = sorted(geo["pair"].unique())
    out = [f"| score | {' | '.join(pairs)} | all | p: mean r, max abs r, runs >= 0.1 | "
           "conf. AUROC (all) | conf.: mean r, max abs r, runs >= 0.1 | "
           "sqrt conf. AUROC (all) | sqrt conf.: r |", "|---" * (len(pairs) + 7) + "|"]
    for name in names:
        per = [f"{geo.loc[geo['pair'] == q, f'p_auroc:{name}'].mean():.3f}" for q in pairs]
        cells = []
        for kind in ("p", "c", "h"):
            r = geo[f"{kind}_r:{name}"]
            cells.append(f"{r.mean():+.3f}, {r.abs().max():.3f}, {int((r.abs() >= 0.1).sum())}"
                         f"/{len(r)}")
        out.append(f"| {name} | {' | '.join(per)} | {geo[f'p_auroc:{name}'].mean():.3f} | "
                   f"{cells[0]} | {geo[f'c_auroc:{name}'].mean():.3f} | {cells[1]} | "
                   f"{geo[f'h_auroc:{name}'].mean():.3f} | {cells[2]} |")
    if "auroc_library" in geo:
        lib = geo.groupby("pair")["auroc_library"].mean().round(3).to_dict()
        mp = geo.groupby("pair")["auroc_maxprob"].mean().round(3).to_dict()
        out.append(f"\nLibrary size alone: {lib}; max prob alone: {mp}")
    return "\n".join(out)


def run_split(ref_all: ad.AnnData, query_all: ad.AnnData, pair: str, held_out: str,
              n_top_genes: int) -> tuple[ad.AnnData, ad.AnnData]:
    """One leave-one-type-out run's (reference without ``held_out``, query), on the
    reference's highly variable genes (Kang → pbmc68k: the shared genes as drawn)."""
    ref = ref_all[ref_all.obs["type"] != held_out].copy()
    query = query_all.copy()
    if pair != "kang_pbmc68k":
        cols = reference_hvgs(ref.X, n_top_genes)
        ref, query = ref[:, cols].copy(), query[:, cols].copy()
    return ref, query


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=lambda s: s.split(","), default=None,
                   help=f"default: {','.join(PAIRS)}; with --dev the Kang pairs only")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--defaults-seeds", type=lambda s: [int(x) for x in s.split(",") if x],
                   default=[0], help="seeds that also run scANVI at its defaults (slow: 41 "
                   "min a run on a loaded 2-core VM)")
    p.add_argument("--types", type=lambda s: s.split(","), default=[],
                   help="only these held-out types (default: every type that qualifies)")
    p.add_argument("--cap", type=int, default=200, help="cells per type and side at most")
    p.add_argument("--min-ref", type=int, default=50)
    p.add_argument("--min-query", type=int, default=20)
    p.add_argument("--n-top-genes", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--query-epochs", type=int, default=20)
    p.add_argument("--model-kw", type=parse_model_kw, action="append", default=[],
                   metavar="KEY=VALUE", help="geovae refits with this keyword of geovae.fit, "
                   "or else of its model_options (repeatable; e.g. encoder_input=log1p_cp10k); "
                   "recorded per run: give each setting its own --out and --save-arrays")
    p.add_argument("--phase", type=int, default=0, choices=(0, 1, 2, 3),
                   help="1: geovae only; 2: scANVI only (budget, then defaults); 3: scANVI "
                   "(budget) only; 0: all")
    p.add_argument("--reverse", action="store_true", help="from the end of the queue (a "
                   "helper process: records are re-read before every run, so it skips the "
                   "others' finished runs)")
    p.add_argument("--wait", action="store_true", help="wait for other processes' geovae "
                   "runs that budget runs need")
    p.add_argument("--shard", default="0/1", help="i/n: run every n-th run from the i-th")
    p.add_argument("--out", type=Path, default=Path("loto.jsonl"))
    p.add_argument("--table", type=Path, default=None, help="print the tables of a record")
    p.add_argument("--dev", action="store_true", help="the development split (the bundled "
                   "Kang subset, Kang pairs only) instead of the reported cells")
    p.add_argument("--save-arrays", type=Path, default=None, help="folder for each geovae "
                   "run's latent, -ELBO, depth and votes (rescored with --rescore)")
    p.add_argument("--rescore", type=Path, default=None, help="the candidate-score table "
                   "recomputed from a --save-arrays folder")
    p.add_argument("--rescore-record", type=Path, default=None, help="with --rescore: "
                   "also write the recomputed metrics there (JSON lines)")
    p.add_argument("--candidates", type=Path, default=None, help="the candidate-score table "
                   "of a record")
    args = p.parse_args()
    args.model_kw = dict(args.model_kw)
    args.pairs = check_pairs(args.pairs, args.dev)
    if args.table is not None:
        print(table(args.table))
        return
    if args.rescore is not None or args.candidates is not None:
        recs = rescore(args.rescore) if args.rescore else load(args.candidates)
        if args.rescore_record is not None:
            recs.to_json(args.rescore_record, orient="records", lines=True)
        print(candidate_table(recs))
        return
    run_all(args)


if __name__ == "__main__":
    main()
