"""Paired comparisons across seeds for the benchmark scripts.

Every "A beats B" statement in benchmarks/RESULTS.md rests on ``paired``: the per-seed
differences A - B (the same seed gives both methods the same data split and, where the method
is random, the same seed), a two-sided paired t-test on them, and Wilcoxon's signed-rank test
(exact, two-sided) beside it. The t-test is the one a claim is read from: with n = 5 seeds the
smallest two-sided Wilcoxon p-value is 2 / 2^5 = 0.0625, so Wilcoxon alone can never reach
0.05 there; it is printed as a check that one outlying seed does not carry the t-test.
Standard deviations are sample standard deviations (ddof = 1).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05


def sd(values) -> float:
    """Sample standard deviation (ddof = 1); NaN for fewer than two finite values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1)) if len(v) > 1 else float("nan")


def mean_sd(values, digits: int = 3) -> str:
    """'mean ± sd' (ddof = 1) of the finite values; 'n/a' where there are none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "n/a"
    return f"{v.mean():.{digits}f} ± {sd(v):.{digits}f}"


def paired(a, b) -> dict[str, float]:
    """Paired comparison of a and b (one value per seed, same seed order): the mean and sd of
    a - b, the paired t-test p and the exact Wilcoxon signed-rank p (both two-sided).
    Pairs with a non-finite member are dropped."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = len(d)
    out = {"n": n, "diff": float(d.mean()) if n else float("nan"), "sd": sd(d),
           "p_t": float("nan"), "p_w": float("nan")}
    if n >= 2 and np.ptp(d) > 0:
        out["p_t"] = float(stats.ttest_rel(a[keep], b[keep]).pvalue)
    elif n >= 2 and d[0] != 0:  # identical non-zero differences: t is infinite
        out["p_t"] = 0.0
    if n >= 1 and np.any(d != 0):
        out["p_w"] = float(stats.wilcoxon(d, method="exact" if n <= 50 else "auto").pvalue)
    return out


def verdict(r: dict[str, float], name_a: str, name_b: str, alpha: float = ALPHA) -> str:
    """'A > B' / 'A < B' where the paired t-test rejects equality at ``alpha``, else 'n.s.'."""
    if not (r["p_t"] < alpha):  # NaN compares False: no test, no claim
        return "n.s."
    return f"{name_a} > {name_b}" if r["diff"] > 0 else f"{name_a} < {name_b}"


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def table(rows: list[tuple[str, str, str, dict[str, float]]], unit: str = "") -> list[str]:
    """Markdown lines for (context, A, B, paired(A, B)) rows."""
    head = f"mean A - B{f' ({unit})' if unit else ''}"
    lines = [f"| | A | B | n | {head} | sd | paired t p | Wilcoxon p | verdict (t, p < {ALPHA}) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ctx, a, b, r in rows:
        lines.append(f"| {ctx} | {a} | {b} | {r['n']} | {r['diff']:+.3f} | {r['sd']:.3f} "
                     f"| {fmt_p(r['p_t'])} | {fmt_p(r['p_w'])} | {verdict(r, 'A', 'B')} |")
    return lines
