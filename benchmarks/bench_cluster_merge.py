"""Leiden at 100k cells cuts types apart (issue 26 item 1): resolution 1 against merging the
clusters the graph cannot tell apart (`geovae.graph.merge`, PAGA connectivity) and against
other resolutions, on fitted latents (no training here).

Run (the 2026-12-06 record, `results/cluster_merge_2026-12-06.jsonl`)::

    nice -n 19 python benchmarks/bench_cluster_merge.py --json merge.jsonl --fits \
        "/tmp/vs_100k/geovae_s*.h5ad:cell_type@/tmp/vs_100k/synthetic_100000x2000_s0.h5ad" \
        "/tmp/vs_quiet2/geovae_s*.h5ad:cell_type@/tmp/vs_quiet2/synthetic_20000x2000_s0.h5ad" \
        "/tmp/hres/kang_s*.h5ad:seurat_annotations" \
        "/tmp/hres/kangstim_s*.h5ad:seurat_annotations" \
        "/tmp/hres/pbmc68k_s*.h5ad:bulk_labels" "/tmp/hres/mouse10k_s*.h5ad:none" \
        "/tmp/hres/sim50k_s*.h5ad:cell_type@/tmp/hres/sim50k_d1.h5ad"
        "/tmp/hres/sim200k_s0.h5ad:cell_type@/tmp/hres/sim200k_d2.h5ad"
    python benchmarks/bench_cluster_merge.py --summary merge.jsonl

The vs_* fits are `bench_vs_scvi.py --defaults --epochs 10 --seeds 0 1 2 3 4` (``--cells
100000`` and 20000); kang / kangstim / pbmc68k / mouse10k: ``geovae fit data/<name>_counts.h5ad
--seed S --no-umap`` (kangstim with ``--batch-key stim``); sim50k: bench_vs_scvi's simulation
with 50,000 cells and data seed 1, ``geovae fit --batch-key batch --epochs 10 --seed S``;
sim200k: the same with 200,000 cells, data seed 2, seed 0 only.

Each ``--fits`` item is ``GLOB:LABEL_KEY[@LABEL_FILE]``: h5ad files written by ``geovae fit``
(its kNN graph ``obsp['geovae_neighbors_*']`` is reused; the labels come from the file itself
or from LABEL_FILE, same cells in the same order; LABEL_KEY ``none``: unlabelled, scored
against the resolution-1 clusters, i.e. how much a method changes them). Methods, all on the
same graph, Leiden as geovae runs it (`geovae.tools.resolution.LEIDEN`, the fit's seed):
``res1`` (the fit's own default clusters, recomputed), ``res<r>`` (a fixed resolution),
``res_n`` (resolution ``min(1, sqrt(20000 / cells))``: shrinking with the cells), ``merge<t>``
(res1, then PAGA merges above connectivity t), ``merge_gap`` (the gap rule,
`geovae.graph.merge.gap_stop`). Recorded: ARI, NMI, clusters, seconds of the step.
``--sequence`` records instead each fit's whole greedy merge sequence (`run_sequence`), and
``--rules FILE`` scores stopping rules on such records (`rules`; the 2026-12-06 record
`results/cluster_merge_sequences_2026-12-06.jsonl`, same fits as above plus a fourth draw:
300,000 cells, data seed 3, ``geovae fit --batch-key batch --epochs 10 --seed S --no-umap``,
seeds 0-1).
``--summary`` picks the threshold on the development fits (`DEV`) and pairs every set against
resolution 1.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

RESOLUTIONS = (0.5,)
THRESHOLDS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)


def leiden(adata, resolution: float, seed: int) -> np.ndarray:
    import scanpy as sc

    from geovae import _keys as K
    from geovae.tools.resolution import LEIDEN

    sc.tl.leiden(adata, resolution=resolution, key_added="_bench", random_state=seed,
                 neighbors_key=K.NEIGHBORS, **LEIDEN)
    return adata.obs.pop("_bench").astype(str).to_numpy()


def run_one(path: str, label_key: str, label_file: str | None) -> list[dict]:
    import anndata as ad
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from geovae import _keys as K
    from geovae.graph.merge import merge_clusters

    a = ad.read_h5ad(path)
    seed = int(a.uns["geovae"].get("seed", 0))
    rows = []
    t = time.perf_counter()
    base = leiden(a, 1.0, seed)
    t_leiden = time.perf_counter() - t
    if label_key == "none":  # unlabelled: scored against resolution 1's clusters
        truth = base
    else:
        truth = (ad.read_h5ad(label_file, backed="r") if label_file else a).obs[label_key]
        truth = truth.astype(str).to_numpy()

    def add(method: str, labels: np.ndarray, secs: float, **extra) -> None:
        rows.append({"file": path, "cells": a.n_obs, "seed": seed, "method": method,
                     "ari": adjusted_rand_score(truth, labels),
                     "nmi": normalized_mutual_info_score(truth, labels),
                     "clusters": int(len(set(labels))), "seconds": secs, **extra})

    add("res1", base, t_leiden)
    for r in RESOLUTIONS:
        t = time.perf_counter()
        add(f"res{r:g}", leiden(a, r, seed), time.perf_counter() - t)
    r_n = min(1.0, float(np.sqrt(20000 / a.n_obs)))
    t = time.perf_counter()
    add("res_n", leiden(a, r_n, seed), time.perf_counter() - t, resolution=r_n)
    for th in THRESHOLDS:
        t = time.perf_counter()
        labels, rec = merge_clusters(a, base, K.NEIGHBORS, th)
        add(f"merge{th:g}", labels, time.perf_counter() - t, merged=rec.merged,
            connectivity=rec.connectivity, max_left=rec.max_left, leiden_seconds=t_leiden)
    t = time.perf_counter()
    labels, rec = merge_clusters(a, base, K.NEIGHBORS, "gap")
    add("merge_gap", labels, time.perf_counter() - t, merged=rec.merged,
        connectivity=rec.connectivity, max_left=rec.max_left, at_gap=rec.at_gap,
        leiden_seconds=t_leiden)
    return rows


def run_sequence(path: str, label_key: str, label_file: str | None) -> dict:
    """The whole greedy merge sequence of one fit (resolution 1, then merges down to one
    cluster): each merge's connectivity and the ARI / NMI / clusters after it (``steps[0]``:
    Leiden's clusters), so that any stopping rule can be scored without rerunning Leiden."""
    import anndata as ad
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from geovae import _keys as K
    from geovae.graph.merge import edge_counts, paga_connectivity

    a = ad.read_h5ad(path)
    seed = int(a.uns["geovae"].get("seed", 0))
    base = leiden(a, 1.0, seed)
    if label_key == "none":
        truth = base
    else:
        truth = (ad.read_h5ad(label_file, backed="r") if label_file else a).obs[label_key]
        truth = truth.astype(str).to_numpy()
    names, codes = np.unique(base, return_inverse=True)
    groups = [[i] for i in range(len(names))]
    edges = edge_counts(a, codes, len(names), K.NEIGHBORS)
    sizes = np.bincount(codes, minlength=len(names)).astype(float)
    cur = codes.copy()

    def score(conn: float | None, pair: list[float] | None) -> dict:
        return {"ari": adjusted_rand_score(truth, cur), "nmi": normalized_mutual_info_score(
            truth, cur), "clusters": len(groups), "connectivity": conn, "sizes": pair}

    steps = [score(None, None)]
    while len(groups) > 1:
        conn = paga_connectivity(edges, sizes)
        i, j = sorted(np.unravel_index(int(np.argmax(conn)), conn.shape))
        c, pair = float(conn[i, j]), [float(sizes[i]), float(sizes[j])]
        for g in groups[j]:
            cur[cur == g] = groups[i][0]
        groups[i] += groups[j]
        del groups[j]
        edges[i, :] += edges[j, :]
        edges[:, i] += edges[:, j]
        edges = np.delete(np.delete(edges, j, axis=0), j, axis=1)
        sizes[i] += sizes[j]
        sizes = np.delete(sizes, j)
        steps.append(score(c, pair))
    return {"file": path, "cells": a.n_obs, "seed": seed, "method": "sequence",
            "steps": steps}


#: the development set (chose the threshold): these fits; everything else only reports
DEV = ("vs_100k/geovae_s0", "vs_quiet2/geovae_s0", "hres/kang_", "hres/kangstim_")


def _set_name(f: str) -> str:
    return Path(f).parent.name + "/" + Path(f).name.split("_s")[0]


def summary(path: Path) -> None:
    """Per set: each method's ARI / NMI / clusters, paired against resolution 1 (t-test p);
    the threshold the development rule picks (highest mean ARI over the development sets,
    each set's seeds averaged first; ties to the higher threshold); a Markdown table."""
    import pandas as pd
    from paired_stats import fmt_p, paired

    d = pd.DataFrame([json.loads(x) for x in path.read_text().splitlines() if x.strip()])
    d["dev"] = d["file"].map(lambda f: any(k in f for k in DEV))
    d["set"] = [_set_name(f) + (" s0" if dev and "_s0" in f and "kang" not in f else "")
                for f, dev in zip(d["file"], d["dev"], strict=True)]
    dev = d[d.dev & d.method.str.startswith("merge")]
    score = dev.groupby(["set", "method"]).ari.mean().groupby("method").mean()
    best = max(score.index, key=lambda m: (round(score[m], 6), float(m[5:])))
    print("development mean ARI per threshold:",
          ", ".join(f"{m[5:]}: {v:.3f}" for m, v in score.items()), "-> chosen", best)
    md = ["| set | role | cells | seeds | res 1: ARI / NMI / clusters | merged: ARI / NMI / "
          "clusters | ARI diff (p) | NMI diff (p) | res 0.5: ARI |", "|" + "---|" * 9]
    for name, g in d.groupby("set", sort=False):
        role = "dev" if g.dev.all() else ("dev s0" if g.dev.any() else "report")
        print(f"\n{name} ({g.cells.iloc[0]} cells, {role}, seeds {sorted(g.seed.unique())})")
        base = g[g.method == "res1"].set_index("seed").sort_index()
        for m, h in g.groupby("method", sort=False):
            h = h.set_index("seed").sort_index()
            ra, rn = paired(h.ari, base.ari), paired(h.nmi, base.nmi)
            print(f"  {m:9s} ARI {h.ari.mean():.3f}±{h.ari.std():.3f}  NMI {h.nmi.mean():.3f}"
                  f"±{h.nmi.std():.3f}  k {h.clusters.mean():5.1f}  dARI {ra['diff']:+.3f} "
                  f"p {fmt_p(ra['p_t'])} (min {(h.ari - base.ari).min():+.3f})  dNMI "
                  f"{rn['diff']:+.3f} p {fmt_p(rn['p_t'])}  {h.seconds.mean():.2f} s")
        h = g[g.method == best].set_index("seed").sort_index()
        r5 = g[g.method == "res0.5"].ari.mean()
        ra, rn = paired(h.ari, base.ari), paired(h.nmi, base.nmi)
        md.append(f"| {name} | {role} | {g.cells.iloc[0]:,} | {len(h)} | {base.ari.mean():.3f} / "
                  f"{base.nmi.mean():.3f} / {base.clusters.mean():.1f} | {h.ari.mean():.3f} / "
                  f"{h.nmi.mean():.3f} / {h.clusters.mean():.1f} | {ra['diff']:+.3f} "
                  f"({fmt_p(ra['p_t'])}) | {rn['diff']:+.3f} ({fmt_p(rn['p_t'])}) | {r5:.3f} |")
    print("\n" + "\n".join(md))


#: stopping rules scored on the recorded sequences (`rules`): merges kept, from the
#: connectivities of the greedy merges and the highest left after the last
def _rules() -> dict:
    from geovae.graph.merge import gap_stop

    def threshold(t: float):
        return lambda cs: next((k for k, c in enumerate(cs) if c <= t), len(cs))

    def gap(floor: float, ratio: float):
        def stop(cs: list[float]) -> int:
            run = next((k for k, c in enumerate(cs) if c <= floor), len(cs))
            return gap_stop(cs[:run], cs[run] if run < len(cs) else None, ratio=ratio)
        return stop

    return {"res1": lambda cs: 0, "0.8": threshold(0.8), "0.7": threshold(0.7),
            "gap": gap(0.3, 10.0), "gap floor 0.5": gap(0.5, 10.0),
            "gap ratio 5": gap(0.3, 5.0)}


def rules(path: Path) -> None:
    """Per set (`run_sequence` records): each stopping rule's ARI / NMI / clusters, and the
    gap rule paired against 0.8 over the set's seeds (t-test p)."""
    import pandas as pd
    from paired_stats import fmt_p, paired

    out = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        steps, cs = r["steps"], [s["connectivity"] for s in r["steps"][1:]]
        dev = any(k in r["file"] for k in DEV)
        name = _set_name(r["file"]) + (" s0" if dev and "kang" not in r["file"] else "")
        for rule, stop in _rules().items():
            s = steps[stop(cs)]
            out.append({"set": name, "dev": dev, "cells": r["cells"], "seed": r["seed"],
                        "rule": rule, "ari": s["ari"], "nmi": s["nmi"],
                        "clusters": s["clusters"]})
    d = pd.DataFrame(out)
    for (name, dev), g in d.groupby(["set", "dev"], sort=False):
        print(f"\n{name} ({g.cells.iloc[0]} cells, {'dev' if dev else 'report'}, seeds "
              f"{sorted(g.seed.unique())})")
        base = g[g.rule == "0.8"].set_index("seed").sort_index()
        for rule, h in g.groupby("rule", sort=False):
            h = h.set_index("seed").sort_index()
            ra, rn = paired(h.ari, base.ari), paired(h.nmi, base.nmi)
            print(f"  {rule:14s} ARI {h.ari.mean():.3f}  NMI {h.nmi.mean():.3f}  k "
                  f"{h.clusters.mean():5.1f}  vs 0.8: dARI {ra['diff']:+.4f} p "
                  f"{fmt_p(ra['p_t'])} (min {(h.ari - base.ari).min():+.3f})  dNMI "
                  f"{rn['diff']:+.4f} p {fmt_p(rn['p_t'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fits", nargs="*", default=[])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--summary", type=Path)
    ap.add_argument("--rules", type=Path, help="score stopping rules on --sequence records")
    ap.add_argument("--sequence", action="store_true",
                    help="record each fit's whole greedy merge sequence (`run_sequence`)")
    args = ap.parse_args()
    if args.summary:
        summary(args.summary)
        return
    if args.rules:
        rules(args.rules)
        return
    for item in args.fits:
        pattern, _, labels = item.partition(":")
        key, _, label_file = labels.partition("@")
        for path in sorted(glob.glob(pattern)):
            if args.sequence:
                row = run_sequence(path, key, label_file or None)
                print(json.dumps({"file": path, "steps": len(row["steps"])}), flush=True)
                if args.json:
                    with args.json.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                continue
            for row in run_one(path, key, label_file or None):
                print(json.dumps({k: row[k] for k in ("file", "method", "ari", "nmi",
                                                      "clusters", "seconds")}), flush=True)
                if args.json:
                    with args.json.open("a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
