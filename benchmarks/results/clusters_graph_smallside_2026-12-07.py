"""The ``graph`` merge rule with and without its small-side veto
(`geovae.modules.graph_merge.small_side_veto`, issue 24), beside ``elbo``, on the same fit's
kept weights (the merges run after training only), as clusters_graph_rare_2026-12-07.py
(whose ``fit``, ``scores`` and ``baselines`` this reuses: same data, same fits, VAE + Leiden
and VAE + BGMM on the same draw). Run from the repository root::

    OMP_NUM_THREADS=1 nice -n 19 python THIS.py fit DUMPDIR DATA K SEED ...
    OMP_NUM_THREADS=1 nice -n 19 python THIS.py baselines OUT.jsonl DATA K SEED ...
    OMP_NUM_THREADS=1 nice -n 19 python THIS.py eval OUT.jsonl SET [--grid] DUMP.pt ...
    python THIS.py summary OUT.jsonl > SUMMARY.md

``fit`` pickles each fit's kept weights to DUMPDIR/DATA_K_SEED.pt; ``eval`` runs ``elbo``,
``graph`` without the veto and ``graph_veto`` (the constants as in src) on each, one record a
rule, tagged ``set``; ``--grid`` (development split only, `DEV`) adds ``graph_veto`` at each
`GRID` point (``share``, ``edges``). DATA: a `cluster_sets.load` name or ``rare1``.

Run 2026-12-07 10:38-11:38 UTC (branch graph-veto off main 53f3dbd; 2 shared cores, nice 19):
``fit /tmp/gv/dev rare 15 10 ... 24``, ``fit /tmp/gv/dev rare1 15 30 ... 34``, ``fit /tmp/gv/dev
issue2k 15 10 ... 14`` (development), ``fit /tmp/gv/fresh rare 15 40 ... 44``, ``... issue2k 15
40 ... 44``, ``... rare1 15 50 ... 54`` (report), ``baselines OUT rare 15 40 ... 44`` and
``... issue2k 15 40 ... 44`` (tagged ``report`` after); ``eval OUT development --grid`` on each
development dump, ``eval OUT report`` on each report dump once 0.02 / 0.25 were confirmed."""
import functools
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
from paired_stats import paired  # noqa: E402

from geovae.modules import graph_merge as gm  # noqa: E402
from geovae.modules import merging  # noqa: E402
from geovae.modules.cgmvae import DELETE_CELLS  # noqa: E402
from geovae.modules.deletion import mixture_probs, seeded_subsample  # noqa: E402

#: the development split that chose `gm.SMALL_SHARE` and `gm.SMALL_EDGES` (data, seeds)
DEV = {"rare": range(10, 25), "rare1": range(30, 35), "issue2k": range(10, 15)}
#: the veto's settings tried on `DEV` (share of the cells, share of the small side's edges)
GRID = [(s, e) for s in (0.01, 0.02, 0.03) for e in (0.1, 0.25, 0.4, 0.5)]
PLAIN = merging.graph_merges


def run_rule(d: dict, rule: str, veto: bool, share: float, edges: float) -> np.ndarray:
    """The dump's kept weights, then the fit's merge and delete moves under ``rule``."""
    model, (source, idx, s) = d["model"], d["args"]
    module = model.module
    module.load_state_dict(d["state"])
    module.merge_rule, module.weights_fixed = rule, d["fixed"]
    merging.graph_merges = functools.partial(PLAIN, veto=veto)
    old = gm.SMALL_SHARE, gm.SMALL_EDGES
    gm.SMALL_SHARE, gm.SMALL_EDGES = share, edges
    try:
        rare.ORIGINAL(module, source, idx, s)
    finally:
        merging.graph_merges = PLAIN
        gm.SMALL_SHARE, gm.SMALL_EDGES = old
    return model.cluster_probs_of(source).argmax(1)


def groups_of(d: dict, share: float, edges: float, truth: np.ndarray, veto: bool = True
              ) -> dict:
    """The gap rule's groups with the veto at (share, edges) on the kept weights, what it
    vetoed, and each vetoed group's majority type, its share and cells; without ``veto``,
    each merge's smaller side (cells, share of the cells, share of its edges to the other
    side) and the two sides' majority types."""
    model, (source, idx, s) = d["model"], d["args"]
    model.module.load_state_dict(d["state"])
    means, ml = gm.posterior_means(model.module, source, idx, s, DELETE_CELLS)
    lab = mixture_probs(ml, model.module.active, None).argmax(1).numpy()
    sub = truth[seeded_subsample(idx, DELETE_CELLS, s).cpu().numpy()]
    old = gm.SMALL_SHARE, gm.SMALL_EDGES
    gm.SMALL_SHARE, gm.SMALL_EDGES = share, edges
    sides = []

    def look(e: np.ndarray, n: np.ndarray, i: int, j: int) -> bool:
        small, other = (i, j) if n[i] <= n[j] else (j, i)
        sides.append([int(n[small]), round(float(n[small] / n.sum()), 4),
                      round(float(e[small, other] / e[small].sum()), 3)])
        return False

    try:
        _, rec = gm.graph_merge_record(means.numpy(), lab, s,
                                       veto=gm.small_side_veto if veto else look)
    finally:
        gm.SMALL_SHARE, gm.SMALL_EDGES = old

    def major(name: str) -> list:
        m = np.isin(lab.astype(str), name.split("+"))
        t, n = np.unique(sub[m], return_counts=True)
        return [str(t[n.argmax()]), round(float(n.max() / n.sum()), 3), int(n.sum())]

    if not veto:
        return {"merged": rec.merged, "merge_sides": [
            [*x, *(major(y)[0] for y in _sides(m, rec.merged[:k]))]
            for k, (m, x) in enumerate(zip(rec.merged, sides, strict=False))]}
    return {"merged": rec.merged, "vetoed": {k: round(v, 4) for k, v in rec.vetoed.items()},
            "vetoed_sides": {k: [major(x) for x in _sides(k, rec.merged)]
                             for k in rec.vetoed}}


def _sides(pair: str, merged: list[str]) -> list[str]:
    """The two groups a vetoed ``a+b+...`` joined (split where the left side's merges end)."""
    parts = pair.split("+")
    for k in range(1, len(parts)):
        left, right = "+".join(parts[:k]), "+".join(parts[k:])
        if all(len(x.split("+")) == 1 or x in merged for x in (left, right)):
            return [left, right]
    return [parts[0], "+".join(parts[1:])]


def evaluate(d: dict, out: Path, tag: str, grid: bool) -> None:
    labels = d["labels"]
    base = {"data": d["data"], "k": d["k"], "seed": d["seed"], "set": tag,
            "fit_seconds": round(d["seconds"], 1), "epochs_run": d["epochs_run"]}
    runs = [("elbo", "cgmvae_elbo", False, gm.SMALL_SHARE, gm.SMALL_EDGES),
            ("graph", "cgmvae_graph", False, gm.SMALL_SHARE, gm.SMALL_EDGES),
            ("graph", "cgmvae_graph_veto", True, gm.SMALL_SHARE, gm.SMALL_EDGES)]
    if grid:
        runs += [("graph", "grid", True, s, e) for s, e in GRID]
    for rule, method, veto, share, edges in runs:
        t0 = time.process_time()
        pred = run_rule(d, rule, veto, share, edges)
        rec = {**base, "method": method, **rare.scores(labels, pred),
               "moves_cpu_s": round(time.process_time() - t0, 2)}
        if rule == "graph":
            rec.update(share=share, edges=edges, **groups_of(d, share, edges, labels, veto))
        if rule == "elbo" and "written" in d:
            rec["matches_fit"] = bool((pred == d["written"]).all())
        rare.emit(rec, out)


def summary(path: Path) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    methods = ["cgmvae_elbo", "cgmvae_graph", "cgmvae_graph_veto", "vae_leiden"]
    for tag in dict.fromkeys(r["set"] for r in rows if "set" in r):
        sets = sorted({r["data"] for r in rows if r.get("set") == tag})
        for data in sets:
            rs = [r for r in rows if r.get("set") == tag and r["data"] == data]
            seeds = sorted({r["seed"] for r in rs if r["method"] == "cgmvae_graph"})
            by = {m: {r["seed"]: r for r in rs if r["method"] == m} for m in methods}
            print(f"\n### {data}, K = 15, {tag} (seeds {seeds[0]}-{seeds[-1]}, n = {len(seeds)})\n")
            print("| method | in use per seed | ARI per seed | mean ARI | mean NMI | rare F1 per "
                  "seed | mean rare F1 | rare own |")
            print("|---|---|---|---|---|---|---|---|")
            for m in methods:
                if not all(s in by[m] for s in seeds):
                    continue
                g = [by[m][s] for s in seeds]
                aris = ", ".join(f"{r['ari']:.3f}" for r in g)
                f1s = ", ".join(f"{r['rare_f1']:.2f}" + ("" if r["rare_own"] else "*")
                                for r in g)
                print(f"| {m} | {', '.join(str(r['n_used']) for r in g)} | {aris} | "
                      f"{np.mean([r['ari'] for r in g]):.3f} | "
                      f"{np.mean([r['nmi'] for r in g]):.3f} | "
                      f"{f1s} | "
                      f"{np.mean([r['rare_f1'] for r in g]):.3f} | "
                      f"{sum(r['rare_own'] for r in g)}/{len(g)} |")
            print()
            veto = "cgmvae_graph_veto"
            for a, b in [(veto, "cgmvae_graph"), (veto, "cgmvae_elbo"),
                         ("cgmvae_graph", "cgmvae_elbo"), (veto, "vae_leiden")]:
                if not all(s in by[a] and s in by[b] for s in seeds):
                    continue
                cells = []
                for key in ("ari", "nmi", "n_used", "rare_f1"):
                    p = paired([by[a][s][key] for s in seeds], [by[b][s][key] for s in seeds])
                    cells.append(f"{key} {p['diff']:+.3f} (p {p['p_t']:.2g})")
                print(f"{a} - {b}: {', '.join(cells)}\n")
            for s in seeds:
                v = by["cgmvae_graph_veto"].get(s)
                if v and v["vetoed"]:
                    print(f"- seed {s}: vetoed {v['vetoed']} (sides: type, share, cells: "
                          f"{v['vetoed_sides']})")
        grid = [r for r in rows if r.get("set") == tag and r["method"] == "grid"]
        if grid:
            print(f"\n### {tag}: the veto's settings on the development split (mean over seeds)\n")
            print("| share | edges | " + " | ".join(f"{d} ARI | {d} rare F1 | {d} in use"
                                                   for d in sets) + " |")
            print("|---|---|" + "---|---|---|" * len(sets))
            plain = {d: [r for r in rows if r.get("set") == tag and r["data"] == d
                         and r["method"] == "cgmvae_graph"] for d in sets}
            cells = [f"{np.mean([r['ari'] for r in plain[d]]):.3f} | "
                     f"{np.mean([r['rare_f1'] for r in plain[d]]):.3f} | "
                     f"{np.mean([r['n_used'] for r in plain[d]]):.2f}" for d in sets]
            print("| (no veto) | | " + " | ".join(cells) + " |")
            for s, e in GRID:
                cells = []
                for d in sets:
                    g = [r for r in grid if r["data"] == d and r["share"] == s
                         and r["edges"] == e]
                    cells.append(f"{np.mean([r['ari'] for r in g]):.3f} | "
                                 f"{np.mean([r['rare_f1'] for r in g]):.3f} | "
                                 f"{np.mean([r['n_used'] for r in g]):.2f}")
                print(f"| {s} | {e} | " + " | ".join(cells) + " |")


def main() -> None:
    args = sys.argv[1:]
    if args[0] == "fit":
        dumps, data, k = Path(args[1]), args[2], int(args[3])
        dumps.mkdir(parents=True, exist_ok=True)
        for seed in map(int, args[4:]):
            t0 = time.perf_counter()
            rare.fit(data, k, seed, dumps / f"{data}_{k}_{seed}.pt")
            print(data, k, seed, f"{time.perf_counter() - t0:.0f}s", flush=True)
    elif args[0] == "baselines":
        out, data, k = Path(args[1]), args[2], int(args[3])
        for seed in map(int, args[4:]):
            rare.baselines(data, k, seed, out)
    elif args[0] == "eval":
        grid = "--grid" in args
        args = [a for a in args if a != "--grid"]
        for f in args[3:]:
            evaluate(torch.load(f, weights_only=False), Path(args[1]), args[2], grid)
    elif args[0] == "summary":
        summary(Path(args[1]))


if __name__ == "__main__":
    main()
