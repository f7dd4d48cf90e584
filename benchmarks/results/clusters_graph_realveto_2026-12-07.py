"""Issue 24: what tells a type's depth lobe from two real types that the ``graph`` merge
rule joins? On the kept weights of saved fits (clusters_graph_2026-12-07_dump.py or
clusters_graph_rare_2026-12-07.py pickles), replay the ``graph`` rule's greedy PAGA sequence
(with `small_side_veto`, as in src) and, for every pair it merges, measure on the merge
subsample's cells (argmax of q(y|z) at the posterior means):

- depth: median log library of the smaller side minus the larger side's (``dlib``), and the
  AUROC P(library of a smaller-side cell < a larger-side cell's) (``auroc``);
- expression, pooled rates with the library as offset (each side's sum of counts / sum of
  libraries, per gene; replicating the cells changes nothing): the number of genes whose
  |log2 fold change| >= 1 among those with >= ``FLOOR`` counts per cell on average on either
  side (``n_fc1``, ``n_fc2`` for >= 2), and the largest |log2 FC| there (``max_lfc``);
- the ``lobes`` rule's effect sizes (`merge_statistics.feature_effect` on `depth_normalised`
  profiles): the 2nd largest (``eff2``) and the count >= 0.7 with |t| > 4 (``n_lobes``);
- truth: each side's majority label, its share and cells; ``kind`` = lobe (same majority),
  types (different majorities, each side >= 65 % one label) or mixed.

Run from the repository root (OMP_NUM_THREADS=1 nice -n 19): python THIS.py pairs OUT.jsonl
SET DUMP.pt ... (one record a pair the rule merges), python THIS.py eval OUT.jsonl SET
DUMP.pt ... --elbo --graph --graph_expr (each rule's merges then delete moves on the kept
weights: ARI, NMI, in use, rare F1; ``graph``: the rule without the expression veto,
``graph_expr``: as src has it), python THIS.py summary / pair-summary OUT.jsonl (markdown).

Run 2026-12-07 13:15-14:20 UTC (branch realveto; 2 shared cores, nice 19). Fits
(clusters_graph_2026-12-07_dump.py DATA K SEED OUT.pt, default epochs): kang 15 seeds 0-6,
pbmc 15 seeds 0-2, issue2k 15 and 20 seeds 60-64, rare 15 seeds 60-64, hard 15 seeds 60-64;
development fits from clusters_graph_smallside_2026-12-07.py (/tmp/gv/dev: issue2k 15 seeds
10-14, rare 15 seeds 10-24, rare1 15 seeds 30-34). ``pairs`` and ``eval ... --script_expr``
(the veto as a function of the pair records, to check src against) on the development fits
and Kang seeds 0-2 chose the constants in src (fixed in fa03149, committed 13:33 UTC as
4f7b63b, then rebased); then ``eval`` and ``pairs`` once on the report fits (Kang seeds
3-6, pbmc68k seeds 0-2, the simulations' seeds 60-64)."""
import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
_spec = importlib.util.spec_from_file_location("rare", HERE / "clusters_graph_rare_2026-12-07.py")
rare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rare)
import torch  # noqa: E402

from geovae.modules import graph_merge as gm  # noqa: E402
from geovae.modules import merging  # noqa: E402
from geovae.modules.cgmvae import DELETE_CELLS  # noqa: E402
from geovae.modules.deletion import mixture_probs, seeded_subsample  # noqa: E402
from geovae.modules.merge_statistics import depth_normalised, feature_effect  # noqa: E402

#: a gene enters the fold-change count when either side averages >= FLOOR counts per cell
FLOOR = 0.1
#: the development grid of the fold-change count: floors (counts per cell) x |log2 FC|
#: ``grid_t``: the same counts, only genes with Welch |t| > GUARD_T (the ``lobes`` rule's noise
#: guard, on the depth-normalised, batch-centred profiles)
GUARD_T = 4.0
GRID_FLOOR, GRID_LFC = (0.1, 0.25, 0.5, 1.0), (1.0, 1.5, 2.0, 3.0)


def cells_of(d: dict) -> dict:
    """The merge subsample: posterior means, argmax labels, counts, batch, truth."""
    model, (source, idx, s) = d["model"], d["args"]
    module = model.module
    module.load_state_dict(d["state"])
    means, ml = gm.posterior_means(module, source, idx, s, DELETE_CELLS)
    lab = mixture_probs(ml, module.active, None).argmax(1).numpy()
    sub = seeded_subsample(idx, DELETE_CELLS, s)
    xs, cs = [], []
    module.eval()
    with torch.no_grad():
        for batch in source.batches(sub, 1024):
            _, _, target = module.posteriors(batch.x, batch.c)
            xs.append(target.double().cpu())
            cs += [] if batch.c is None else [batch.c.cpu()]
    x = torch.cat(xs)
    c = torch.cat(cs) if cs else None
    return {"means": means.numpy(), "lab": lab, "x": x, "c": c, "seed": s,
            "truth": d["labels"][sub.cpu().numpy()],
            "prof": depth_normalised(x, c, True)}


def pair_stats(cells: dict, a: np.ndarray, b: np.ndarray) -> dict:
    """Statistics of the cells ``a`` (smaller side) and ``b`` (boolean masks)."""
    x = cells["x"].numpy()
    lib = x.sum(1)
    la, lb = np.log(lib[a].clip(1)), np.log(lib[b].clip(1))
    auroc = float((la[:, None] < lb[None]).mean() + 0.5 * (la[:, None] == lb[None]).mean())
    ra, rb = x[a].sum(0) / lib[a].sum(), x[b].sum(0) / lib[b].sum()
    keep = (x[a].mean(0) >= FLOOR) | (x[b].mean(0) >= FLOOR)
    lfc = np.log2((ra[keep] + 1e-9) / (rb[keep] + 1e-9))
    pa, pb = cells["prof"][torch.from_numpy(a)].mean(0).numpy(), \
        cells["prof"][torch.from_numpy(b)].mean(0).numpy()
    plfc = np.log2(np.clip(pa[keep], 1e-9, None) / np.clip(pb[keep], 1e-9, None))
    hard = torch.full((len(a),), -1, dtype=torch.long)
    hard[torch.from_numpy(a)] = 0
    hard[torch.from_numpy(b)] = 1
    eff, t = feature_effect(cells["prof"], hard, 0, 1)
    tt = t.numpy()
    eff = eff.abs().sort(descending=True).values

    def major(m):
        v, n = np.unique(cells["truth"][m], return_counts=True)
        return [str(v[n.argmax()]), round(float(n.max() / n.sum()), 3), int(m.sum())]

    ma, mb = major(a), major(b)
    kind = ("lobe" if ma[0] == mb[0] else
            "types" if min(ma[1], mb[1]) >= 0.65 else "mixed")
    return {"small": ma, "large": mb, "kind": kind,
            "dlib": round(float(np.median(la) - np.median(lb)), 4),
            "auroc": round(auroc, 4),
            "n_fc1": int((np.abs(lfc) >= 1).sum()), "n_fc2": int((np.abs(lfc) >= 2).sum()),
            "max_lfc": round(float(np.abs(lfc).max()) if len(lfc) else 0.0, 3),
            "frac_fc1": round(float((np.abs(lfc) >= 1).mean()), 4) if len(lfc) else 0.0,
            "frac_pfc1": round(float((np.abs(plfc) >= 1).mean()), 4) if len(lfc) else 0.0,
            "frac_pfc15": round(float((np.abs(plfc) >= 1.5).mean()), 4) if len(lfc) else 0.0,
            "n_genes": int(keep.sum()), "share": round(float(a.sum() / len(a)), 4),
            "grid": {f"{fl}_{lf}": int((np.abs(np.log2((ra + 1e-9) / (rb + 1e-9)))[
                (x[a].mean(0) >= fl) | (x[b].mean(0) >= fl)] >= lf).sum())
                for fl in GRID_FLOOR for lf in GRID_LFC},
            "grid_t": {f"{fl}_{lf}": int(((np.abs(np.log2((ra + 1e-9) / (rb + 1e-9))) >= lf)
                                          & ((x[a].mean(0) >= fl) | (x[b].mean(0) >= fl))
                                          & (np.abs(tt) > GUARD_T)).sum())
                       for fl in GRID_FLOOR for lf in GRID_LFC},
            "eff2": round(float(eff[1]), 3),
            "n_lobes": int(((eff >= 0.7) & (t.abs().sort(descending=True).values > 4)).sum())}


def replay(cells: dict, veto=gm.small_side_veto) -> list[dict]:
    """The gap rule's greedy sequence with ``veto``, one record (pair_stats, connectivity
    order) per merge asked of the veto and passed; ``in_gap``: among the merges kept."""
    names = np.unique(cells["lab"].astype(str))
    members = [cells["lab"].astype(str) == n for n in names]
    recs = []

    def look(edges, sizes, i, j):
        if veto is not None and veto(edges, sizes, i, j):
            return True
        small, large = (i, j) if sizes[i] <= sizes[j] else (j, i)
        recs.append(pair_stats(cells, members[small], members[large]))
        members[i] = members[i] | members[j]
        del members[j]
        return False

    _, rec = gm.graph_merge_record(cells["means"], cells["lab"], cells["seed"], veto=look)
    for k, r in enumerate(recs):
        r["step"], r["in_gap"] = k, k < len(rec.merged)
        r["conn"] = round(rec.connectivity[k], 4) if k < len(rec.merged) else None
    return recs


def pairs(out: Path, tag: str, files: list[str]) -> None:
    for f in files:
        d = torch.load(f, weights_only=False)
        cells = cells_of(d)
        for r in replay(cells):
            rec = {"data": d["data"], "k": d["k"], "seed": d["seed"], "set": tag, **r}
            print(json.dumps(rec), flush=True)
            with out.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")


#: candidate vetoes, name -> function of a pair_stats record: True keeps the pair apart
VETOES = {"script_expr": lambda r: r["share"] >= 0.02 and r["frac_fc1"] >= 0.2}
#: the graph rule as src has it (``graph_expr``: with `gm.expression_veto`) and without the
#: expression veto (``graph``, ``script_expr``: the counts' sums withheld)
WITH_SUMS = ("graph_expr",)


def run_rule(d: dict, rule: str, extra=None, with_sums: bool = False) -> np.ndarray:
    """The dump's kept weights, then the merge and delete moves under ``rule``; ``extra``: a
    function of `pair_stats` records, applied inside the graph rule beside the small-side
    veto (exploratory: the src rule has none)."""
    model, (source, idx, s) = d["model"], d["args"]
    module = model.module
    module.load_state_dict(d["state"])
    module.merge_rule, module.weights_fixed = rule, d["fixed"]
    plain, merges = gm.graph_groups, merging.graph_merges
    if not with_sums:
        merging.graph_merges = lambda *a, **k: merges(*a, **{**k, "sums": None})
    if extra is not None:
        cells = cells_of(d)
        module.load_state_dict(d["state"])

        def groups(means, labels, seed=0, n_neighbors=gm.N_NEIGHBORS, veto=True, sums=None):
            assert (np.asarray(labels) == cells["lab"]).all()
            names = np.unique(np.asarray(labels).astype(str))
            members = [np.asarray(labels).astype(str) == n for n in names]

            def v(edges, sizes, i, j):
                if gm.small_side_veto(edges, sizes, i, j):
                    return True
                small, large = (i, j) if sizes[i] <= sizes[j] else (j, i)
                if extra(pair_stats(cells, members[small], members[large])):
                    return True
                members[i] = members[i] | members[j]
                del members[j]
                return False

            merged, _ = gm.graph_merge_record(means, labels, seed, n_neighbors, veto=v)
            out: dict = {}
            for comp in np.unique(labels):
                out.setdefault(str(merged[labels == comp][0]), []).append(int(comp))
            return [sorted(g) for g in out.values() if len(g) > 1]

        gm.graph_groups = groups
    try:
        rare.ORIGINAL(module, source, idx, s)
    finally:
        gm.graph_groups, merging.graph_merges = plain, merges
    return model.cluster_probs_of(source).argmax(1)


def evaluate(out: Path, tag: str, files: list[str], names: list[str]) -> None:
    for f in files:
        d = torch.load(f, weights_only=False)
        base = {"data": d["data"], "k": d["k"], "seed": d["seed"], "set": tag}
        for name in names:
            rule = "elbo" if name == "elbo" else "graph"
            t0 = time.process_time()
            pred = run_rule(copy.copy(d), rule, VETOES.get(name), name in WITH_SUMS)
            rec = {**base, "method": name, **rare.scores(d["labels"], pred),
                   "moves_cpu_s": round(time.process_time() - t0, 2)}
            print(json.dumps(rec), flush=True)
            with out.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")


#: the number of types (labels) of each data set, for "within one of the truth"
TRUTH = {"issue2k": 5, "rare": 5, "rare1": 5, "hard": 5, "kang": 10, "pbmc": 10}


def summary(path: Path) -> None:
    """Markdown: per set and data, each method's components in use and ARI per seed, mean ±
    sd, seeds within one of the truth; paired t of ``graph_expr`` against the others."""
    from paired_stats import mean_sd, paired

    rows = [r for r in map(json.loads, path.read_text().splitlines()) if "method" in r]
    for tag in dict.fromkeys(r["set"] for r in rows):
        for data, k in dict.fromkeys((r["data"], r["k"]) for r in rows if r["set"] == tag):
            rs = [r for r in rows if r["set"] == tag and r["data"] == data and r["k"] == k]
            methods = list(dict.fromkeys(r["method"] for r in rs))
            by = {m: {r["seed"]: r for r in rs if r["method"] == m} for m in methods}
            seeds = sorted(set.intersection(*(set(v) for v in by.values())))
            print(f"\n### {data}, K = {k}, {tag} (seeds {', '.join(map(str, seeds))})\n")
            print("| method | in use per seed | ARI per seed | ARI | NMI | within ±1 of "
                  f"{TRUTH.get(data, '?')} |")
            print("|---|---|---|---|---|---|")
            for m in methods:
                g = [by[m][x] for x in seeds]
                aris = ", ".join(f"{r['ari']:.3f}" for r in g)
                near = sum(abs(r["n_used"] - TRUTH.get(data, 0)) <= 1 for r in g)
                print(f"| {m} | {', '.join(str(r['n_used']) for r in g)} | "
                      f"{aris} | "
                      f"{mean_sd([r['ari'] for r in g])} | {mean_sd([r['nmi'] for r in g])} | "
                      f"{near}/{len(g)} |")
            for other in ("elbo", "graph"):
                if "graph_expr" not in by or other not in by:
                    continue
                cells = []
                for key in ("ari", "nmi", "n_used"):
                    p = paired([by["graph_expr"][x][key] for x in seeds],
                               [by[other][x][key] for x in seeds])
                    cells.append(f"{key} {p['diff']:+.3f} (p {p['p_t']:.2g})")
                print(f"\ngraph_expr - {other}: {', '.join(cells)}")


def pair_summary(path: Path) -> None:
    """Markdown: each statistic's range over the merged pairs (Kang: every pair of the gap
    rule's sequence), by data set, kind and the smaller side's share of the cells."""
    rows = [json.loads(x) for x in path.read_text().splitlines() if '"kind"' in x]
    stats = ("frac_fc1", "frac_pfc1", "dlib", "auroc", "eff2", "n_lobes")
    print("| set | data | kind | smaller side | pairs | " + " | ".join(stats) + " |")
    print("|---|---|---|---|---|" + "---|" * len(stats))
    for tag in dict.fromkeys(r["set"] for r in rows):
        for data in dict.fromkeys(r["data"] for r in rows if r["set"] == tag):
            for kind in ("lobe", "types", "mixed"):
                for name, lo, hi in (("< 1 %", 0, 0.01), ("1-2 %", 0.01, 0.02),
                                     (">= 2 %", 0.02, 1.1)):
                    g = [r for r in rows if r["set"] == tag and r["data"] == data
                         and r["kind"] == kind and lo <= r["share"] < hi
                         and (r["in_gap"] or data in ("kang", "pbmc"))]
                    if g:
                        cells = [f"{min(r[x] for r in g):.3g} to {max(r[x] for r in g):.3g}"
                                 for x in stats]
                        print(f"| {tag} | {data} | {kind} | {name} | {len(g)} | "
                              + " | ".join(cells) + " |")


def main() -> None:
    args = sys.argv[1:]
    if args[0] == "pairs":
        pairs(Path(args[1]), args[2], args[3:])
    elif args[0] == "eval":
        names = [a[2:] for a in args if a.startswith("--")] or ["elbo", "graph"]
        files = [a for a in args[3:] if not a.startswith("--")]
        evaluate(Path(args[1]), args[2], files, names)
    elif args[0] == "summary":
        summary(Path(args[1]))
    elif args[0] == "pair-summary":
        pair_summary(Path(args[1]))


if __name__ == "__main__":
    main()
