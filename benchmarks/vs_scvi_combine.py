"""Tabulate bench_vs_scvi.py records gathered over several runs (one per seed and data draw).

Run:  python benchmarks/vs_scvi_combine.py RECORDS.json [RECORDS.json ...]

Each file holds ``{"data": desc or [desc, ...], "records": [...]}`` (a ``--json`` file of
bench_vs_scvi.py, or several merged). Pairs geovae and SCVI by seed and prints, per measure,
mean ± sd of each, the per-seed ratio SCVI / geovae for times and memory with one-sided paired
t-tests on the log ratio (> 1, > 2, > 3), and for ARI / NMI / clusters the paired difference
with a two-sided paired t-test.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats

TIMES = ("wall_s", "cpu_s", "s_per_epoch", "train_call_s_per_epoch", "peak_rss_mb")
SCORES = ("ari", "nmi", "n_clusters")


def pairs(paths: list[Path]) -> tuple[list[int], dict[int, dict[str, dict]]]:
    """Seeds with both methods, and each seed's record per method."""
    rows: dict[int, dict[str, dict]] = {}
    for path in paths:
        for r in json.loads(path.read_text())["records"]:
            rows.setdefault(r["seed"], {})[r["method"]] = r
    return sorted(s for s in rows if {"geovae", "scvi"} <= set(rows[s])), rows


def main() -> None:
    seeds, rows = pairs([Path(p) for p in sys.argv[1:]])
    print(f"seeds {seeds}")
    for key in TIMES + SCORES:
        g = np.array([rows[s]["geovae"][key] for s in seeds], float)
        v = np.array([rows[s]["scvi"][key] for s in seeds], float)
        line = (f"{key:24s} geovae {g.mean():9.3f} ± {g.std(ddof=1):.3f}  "
                f"SCVI {v.mean():9.3f} ± {v.std(ddof=1):.3f}")
        if key in TIMES:
            ratio = v / g
            line += (f"  ratio {ratio.mean():.2f} ± {ratio.std(ddof=1):.2f} "
                     f"{np.round(ratio, 2).tolist()}")
            for floor in (1, 2, 3):
                test = stats.ttest_1samp(np.log(ratio), math.log(floor), alternative="greater")
                line += f"  p(>{floor}) {test.pvalue:.2g}"
        else:
            line += f"  diff {np.mean(g - v):+.3f}  p {stats.ttest_rel(g, v).pvalue:.2g}"
        print(line)


if __name__ == "__main__":
    main()
