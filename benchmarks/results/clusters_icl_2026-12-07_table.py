"""Table of the c*GMΔVAE with the ICL-chosen start resolution (issue 24, main 71e837c) on the
report draws, paired with the Leiden-start default before it (resolution 1) and the
baselines of the earlier records on the same draws (same data, same seeds): ARI of argmax
q(y|x), mean ± sd, paired t (two-sided) and how many seeds are higher.

    python benchmarks/results/clusters_icl_2026-12-07_table.py > clusters_icl_2026-12-07.md
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.stats import ttest_rel

HERE = Path(__file__).resolve().parent
#: (data, K) -> {method: file}; the donors files' data names in brackets
NEW = ("clusters_icl_2026-12-07.jsonl", "donors_icl_2026-12-07.jsonl")
OLD = ("clusters_leidenstart_2026-12-07.jsonl", "clusters_kangfull_2026-12-07.jsonl",
       "donors_leidenstart_2026-12-07.jsonl", "clusters_leidenstart_scvi_2026-12-07.jsonl",
       "clusters_baselines_icl_2026-12-07.jsonl")
#: bench_donors' names of bench_clusters' draws (the same cells per seed)
SAME = {"sim": "medium", "sim_hard": "hard", "kang_subset": "kang", "kang_stim": "kang_full",
        "pbmc68k": "pbmc68k"}
SETS = (("baron_mouse", None), ("kang_full", 20), ("kang", 15), ("pbmc68k", 15),
        ("digits", 15), ("hard", 15), ("hard", 5), ("medium", 15), ("blobs", 15),
        ("sim", None), ("sim_hard", None))


def rows(files: tuple[str, ...]) -> list[dict]:
    out = []
    for name in files:
        path = HERE / name
        if path.exists():
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def scores(recs: list[dict], data: str, k: int | None, method: str,
           donors: bool) -> dict[int, dict]:
    found = {}
    for r in recs:
        name = r["data"] if donors else SAME.get(r["data"], r["data"])
        if name != data or r["method"] != method:
            continue
        if not donors and method.startswith("cgmvae") and r.get("k") != k:
            continue
        found[int(r["seed"])] = r
    return found


def main() -> None:
    new, old = rows(NEW), rows(OLD)
    print("| data | K | seeds | ICL start | res. chosen | in use | Leiden start (res. 1) | "
          "Δ, p, higher | baselines (Δ, p, higher) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for data, k in SETS:
        donors = k is None
        mine = scores(new, data, k, "cgmvae", donors)
        if not mine:
            continue
        seeds = sorted(mine)
        a = np.array([mine[s]["ari"] for s in seeds])
        res = [mine[s].get("start_resolution", mine[s].get("options", {}).get(
            "start_resolution")) for s in seeds]
        used = [mine[s].get("n_used", mine[s].get("clusters")) for s in seeds]
        cells = [f"{data}", f"{k or 'default'}", f"{seeds[0]}-{seeds[-1]}",
                 f"{a.mean():.3f} ± {a.std(ddof=1):.3f}",
                 "/".join(f"{x:g}" for x in res), "/".join(str(u) for u in used)]
        parts = []
        for method in ("cgmvae", "vae_leiden", "pca_leiden", "scvi_leiden"):
            base = scores(old, data, k, method, donors)
            if method == "scvi_leiden" and not donors:
                base = {s: r for r in old if r["method"] == method and r["data"] in SAME
                        and SAME[r["data"]] == data for s in [int(r["seed"])]}
            both = [s for s in seeds if s in base]
            if len(both) < 2:
                continue
            b = np.array([base[s]["ari"] for s in both])
            x = np.array([mine[s]["ari"] for s in both])
            p = ttest_rel(x, b).pvalue
            text = (f"{b.mean():.3f} ({x.mean() - b.mean():+.3f}, p {p:.2g}, "
                    f"{int((x > b).sum())}/{len(both)})")
            if method == "cgmvae":
                cells.append(f"{b.mean():.3f}")
                cells.append(f"{x.mean() - b.mean():+.3f}, p {p:.2g}, {int((x > b).sum())}/"
                             f"{len(both)}")
            else:
                parts.append(f"{method} {text}")
        if len(cells) == 6:
            cells += ["", ""]
        print("| " + " | ".join(cells + ["; ".join(parts)]) + " |")


if __name__ == "__main__":
    main()
