"""Summarise benchmarks/bench_conditional_kang.py records: mean ± sd (ddof 1) per
configuration and paired t-tests over seeds (new vs old, new vs vae), as a markdown table.

Run:  python benchmarks/summarize_kang_conditional.py \
          benchmarks/results/conditional_kang_2026-11-25.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_stats import mean_sd, paired  # noqa: E402

METRICS = ("same_condition", "ilisi", "ilisi_per_label", "kbet", "batch_asw", "label_asw",
           "nmi", "ari", "mixture_ari", "n_argmax", "seconds")
PAIRS = (("new", "old"), ("new", "vae"))


def table(path: Path) -> str:
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by: dict[str, dict[int, dict]] = {}
    for r in recs:
        by.setdefault(r["config"], {})[r["seed"]] = r
    configs = [c for c in ("old", "new", "vae") if c in by]
    seeds = sorted(set.intersection(*[set(by[c]) for c in configs]))
    head = " | ".join(f"{c} (n={len(seeds)})" for c in configs)
    lines = [f"| metric | {head} | new − old (paired t p) | new − vae (paired t p) |",
             "|---|" + "---|" * (len(configs) + 2)]
    for m in METRICS:
        row, vals = [m], {}
        for c in configs:
            v = [by[c][s].get(m) for s in seeds]
            if any(x is None for x in v):
                row.append("–")
                continue
            vals[c] = np.asarray(v, dtype=float)
            row.append(mean_sd(vals[c]) if len(v) > 1 else f"{vals[c].mean():.3f}")
        for a, b in PAIRS:
            if a in vals and b in vals and len(seeds) > 1:
                r = paired(vals[a], vals[b])
                row.append(f"{r['diff']:+.3f} (p = {r['p_t']:.2g})")
            else:
                row.append("–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("records", type=Path, help="JSON lines of bench_conditional_kang.py")
    print(table(ap.parse_args().records))
