"""The compact table of donors_leidenstart_2026-12-07.md (issue 24 item 4 at the Leiden-start
default): per data set, method x scores (mean ± sd over seeds), the paired t p of each method
against scvi_leiden on the same seeds, and the item's thresholds.

    python benchmarks/results/donors_leidenstart_2026-12-07_table.py \
        benchmarks/results/donors_leidenstart_2026-12-07.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_donors import DATASETS, METHODS  # noqa: E402
from paired_stats import fmt_p, mean_sd, paired  # noqa: E402

COLS = ("ari", "nmi", "purity", "rel_same", "ilisi", "same_batch", "fit_s", "cpu_s")


def main(path: str) -> None:
    recs = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    recs = list({(r["data"], r["method"], r["seed"]): r for r in recs}.values())  # last wins
    for name in [d for d in DATASETS if any(r["data"] == d for r in recs)]:
        by = {m: {r["seed"]: r for r in recs if r["data"] == name and r["method"] == m}
              for m in METHODS}
        seeds = sorted({s for m in by for s in by[m]})
        print(f"\n**{name}** (seeds {seeds}; cell: mean ± sd, then paired t p vs scvi_leiden)\n")
        print("| method | n | " + " | ".join(COLS) + " | epochs |")
        print("|---|---|" + "---|" * (len(COLS) + 1))
        ref = by["scvi_leiden"]
        for m in ("cgmvae", "scvi_leiden", "vae_leiden", "pca_leiden"):
            if not by[m]:
                continue
            cells = []
            for c in COLS:
                vals = [r[c] for r in by[m].values()]
                cell = mean_sd(vals, 0 if c in ("fit_s", "cpu_s") else 3)
                common = sorted(set(by[m]) & set(ref))
                if m != "scvi_leiden" and c not in ("fit_s", "cpu_s") and len(common) >= 2:
                    r = paired([by[m][s][c] for s in common], [ref[s][c] for s in common])
                    cell += f" (p {fmt_p(r['p_t'])})"
                cells.append(cell)
            ep = mean_sd([r.get("epochs", np.nan) for r in by[m].values()], 0)
            print(f"| {m} | {len(by[m])} | " + " | ".join(cells) + f" | {ep} |")
        cg = by["cgmvae"]
        if cg:
            comps = [cg[s].get("n_components_used") for s in sorted(cg)]
            print(f"\ncgmvae components in use per seed {sorted(cg)}: {comps}")
            if "same_batch" in next(iter(cg.values())) and name.startswith("sim"):
                sb = np.array([cg[s]["same_batch"] for s in sorted(cg)])
                t = stats.ttest_1samp(sb, 0.40, alternative="less") if len(sb) > 1 else None
                p = fmt_p(t.pvalue) if t else "n/a"
                print(f"cgmvae same_batch per seed {np.round(sb, 3).tolist()}, max {sb.max():.3f}"
                      f" (item 4: <= 0.40; one-sided t vs 0.40 p {p})")
        vl = by["vae_leiden"]
        common = sorted(set(cg) & set(vl))
        if len(common) >= 2:
            r = paired([cg[s]["ari"] for s in common], [vl[s]["ari"] for s in common])
            wins = sum(cg[s]["ari"] > vl[s]["ari"] for s in common)
            print(f"cgmvae - vae_leiden ARI {r['diff']:+.3f} ± {r['sd']:.3f}, p {fmt_p(r['p_t'])}, "
                  f"higher in {wins} of {len(common)}")
        common = sorted(set(cg) & set(ref))
        if len(common) >= 2:
            wins = sum(cg[s]["ari"] > ref[s]["ari"] for s in common)
            print(f"cgmvae ARI above scvi_leiden in {wins} of {len(common)} seeds")


if __name__ == "__main__":
    main(sys.argv[1])
