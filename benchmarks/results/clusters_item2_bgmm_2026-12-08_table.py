"""Issue 24 item 2 at the ICL start, paired with scikit-learn's BayesianGaussianMixture
(Dirichlet-process weights) on the VAE's latent: same data draws (seeds 20-24), same K.

c*GMΔVAE rows: clusters_icl_2026-12-07.jsonl (hard K = 5 and 15, medium / blobs K = 15),
clusters_icl_k20_2026-12-07.jsonl (hard / medium / blobs K = 20, medium10 K = 15 and 20) and
clusters_item2_bgmm_2026-12-08.jsonl (medium / blobs K = 5, medium10 K = 10: the fits those
records lacked). VAE + BGMM rows: clusters_item2_bgmm_2026-12-08.jsonl (the 30 draws an earlier
record also held came out identical). Writes clusters_item2_bgmm_2026-12-08.md.

    cd benchmarks/results && python clusters_item2_bgmm_2026-12-08_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.stats import ttest_rel

HERE = Path(__file__).resolve().parent
RECORDS = ("clusters_icl_2026-12-07.jsonl", "clusters_icl_k20_2026-12-07.jsonl",
           "clusters_item2_bgmm_2026-12-08.jsonl")
SETS = {"hard": 5, "medium": 5, "blobs": 5, "medium10": 10}
SEEDS = (20, 21, 22, 23, 24)


def main() -> None:
    rows: dict[tuple[str, str, int, int], dict] = {}
    for name in RECORDS:
        for line in (HERE / name).read_text().splitlines():
            r = json.loads(line)
            if r["data"] in SETS and r["method"] in ("cgmvae", "vae_bgmm"):
                rows[(r["data"], r["method"], r["k"], r["seed"])] = r
    out = ["# Issue 24 item 2: c*GMΔVAE (ICL start) vs VAE + BGMM, same draws, same K", "",
           "Seeds 20-24 (fresh for these sets; chose nothing). In use: argmax of >= 0.5 % of the "
           "cells / weight >= 0.5 %, per seed. Paired t over seeds on ARI. Made by "
           "`clusters_item2_bgmm_2026-12-08_table.py`.", "",
           "| set (truth) | K | c*GMΔVAE ARI | in use (argmax / weight) | within ±1 | "
           "VAE + BGMM ARI | in use | within ±1 | Δ ARI (p) |", "|---" * 9 + "|"]
    for data, truth in SETS.items():
        ari15 = None
        for k in (truth, 15, 20):
            cg = [rows[(data, "cgmvae", k, s)] for s in SEEDS]
            bg = [rows[(data, "vae_bgmm", k, s)] for s in SEEDS]
            a, b = np.array([r["ari"] for r in cg]), np.array([r["ari"] for r in bg])
            p = ttest_rel(a, b).pvalue if np.any(a != b) else float("nan")

            def used(rs: list[dict]) -> str:
                return " ".join(f"{r['n_used']}/{r['n_weight']}" for r in rs)

            def within(rs: list[dict], truth: int = truth) -> int:
                return sum(abs(r["n_used"] - truth) <= 1 and abs(r["n_weight"] - truth) <= 1
                           for r in rs)

            out.append(f"| {data} ({truth}) | {k} | {a.mean():.3f} ± {a.std(ddof=1):.3f} | "
                       f"{used(cg)} | {within(cg)} of 5 | {b.mean():.3f} ± {b.std(ddof=1):.3f} | "
                       f"{used(bg)} | {within(bg)} of 5 | {a.mean() - b.mean():+.3f} ({p:.2g}) |")
            if k == 15:
                ari15 = a
        at_truth = np.array([rows[(data, "cgmvae", truth, s)]["ari"] for s in SEEDS])
        out.append(f"| {data}: K = truth vs K = 15 | | largest difference "
                   f"{np.max(np.abs(ari15 - at_truth)):.3f} | | | | | | |")
    (HERE / "clusters_item2_bgmm_2026-12-08.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
