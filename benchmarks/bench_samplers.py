"""Sampler throughput on the sphere: geovae's vMF and Power Spherical against the PyPI
``power-spherical`` package and a Python-loop Wood rejection sampler in the style of
s-vae-pytorch; plus the time of one training step (rsample + KL to uniform, backward).

Each row draws one sample from each of ``batch`` distributions (random unit locs, one kappa),
``rsample`` with kappa requiring grad. samples/s = batch / median seconds per call. geovae's
vMF draws w by the exact inverse CDF at m = 3 and by Wood's batched sampler otherwise (with
the implicit kappa gradient attached). The loop sampler draws w one sample at a time with a
``while`` loop and one host sync (``.item()``) per proposal, as s-vae-pytorch's reference
code does; it is timed once per row. The PyPI package is optional: install it apart from the
project, e.g. ``pip install --no-deps --target DEPS_DIR power-spherical`` and pass
``--extra-path DEPS_DIR``.

Every timing is repeated for ``--seeds`` (default 5: one full pass of the grid per seed, new
random locs each time); tables give mean ± sd (ddof = 1) over seeds, and each "A faster than
B" reading comes with a paired test across seeds on log throughput (paired t-test, Wilcoxon
signed-rank beside it; paired_stats.py).

Usage::

    python benchmarks/bench_samplers.py [--extra-path DEPS_DIR] [--out FILE.md]
        [--seeds 0 1 2 3 4] [--batches 128 4096] [--dims 3 10 65] [--kappas 1 10 100]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Beta, kl_divergence

from geovae.distributions import HypersphericalUniform, PowerSpherical, VonMisesFisher
from geovae.distributions.hyperspherical_uniform import tangent_sample

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_stats import ALPHA, fmt_p, paired, sd, verdict  # noqa: E402


def wood_loop_rsample(loc: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """Wood (1994), one sample per distribution, rejecting one proposal at a time."""
    m = loc.shape[-1]
    m1 = m - 1.0
    beta = Beta(torch.tensor(m1 / 2), torch.tensor(m1 / 2))
    ws = []
    for k in kappa:  # Python loop over samples
        b = m1 / (2 * k + torch.sqrt(4 * k * k + m1 * m1))
        a = (m1 + 2 * k + torch.sqrt(4 * k * k + m1 * m1)) / 4
        d = 4 * a * b / (1 + b) - m1 * math.log(m1)
        while True:
            eps = beta.sample()
            w = (1 - (1 + b) * eps) / (1 - (1 - b) * eps)
            t = 2 * a * b / (1 - (1 - b) * eps)
            u = torch.rand(())
            if (m1 * torch.log(t) - t + d >= torch.log(u)).item():  # host sync
                break
        ws.append(w)
    w = torch.stack(ws)
    return tangent_sample(w, 1 - w, loc)


def draw(cls: type, loc: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """One reparameterised sample from each distribution of the batch."""
    return cls(loc, kappa).rsample()


def train_step(cls: type, raw: torch.Tensor, kraw: torch.Tensor, c: torch.Tensor,
               prior: HypersphericalUniform) -> None:
    """rsample + closed-form KL to the uniform prior, then backward."""
    q = cls(torch.nn.functional.normalize(raw, dim=-1), kraw)
    loss = (q.rsample() @ c).sum() + kl_divergence(q, prior).sum()
    loss.backward()


def timeit(fn: Callable[[], object], min_time: float = 0.3, max_reps: int = 50) -> float:
    """Median seconds per call after one warm-up call."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (time.perf_counter() - start < min_time or len(times) < 3):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _fmt_ms(values: list[float], scale: float = 1.0, spec: str = ",.0f") -> str:
    """mean ± sd (ddof = 1) over seeds."""
    v = np.asarray(values, dtype=float) * scale
    return f"{v.mean():{spec}} ± {sd(v):{spec}}"


def _ratio_rows(cells: dict, pairs: list[tuple[str, str]], key_fmt) -> list[str]:
    """Per row and pair (A, B): geometric-mean ratio A / B over seeds and the paired tests on
    log(A) - log(B) (a throughput or time ratio is what stays stable under machine load);
    verdict 'A > B': the ratio is above 1 at p < ALPHA."""
    rows = []
    for key, per in cells.items():
        for a, b in pairs:
            if a not in per or b not in per:
                continue
            r = paired(np.log(per[a]), np.log(per[b]))
            rows.append(f"| {key_fmt(key)} | {a} | {b} | {r['n']} | {math.exp(r['diff']):.2f} "
                        f"| {fmt_p(r['p_t'])} | {fmt_p(r['p_w'])} "
                        f"| {verdict(r, 'A', 'B')} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra-path", default=None, help="folder holding power_spherical")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                    help="one full pass of the grid per seed (random locs and kappas)")
    ap.add_argument("--batches", type=int, nargs="+", default=[128, 4096])
    ap.add_argument("--dims", type=int, nargs="+", default=[3, 10, 65])
    ap.add_argument("--kappas", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.extra_path:
        sys.path.insert(0, args.extra_path)
    try:
        import power_spherical as pyps  # type: ignore[import-not-found]
    except ImportError:
        pyps = None
    if len(args.seeds) < 5:
        print(f"warning: {len(args.seeds)} seeds; a paired test needs >= 5 to support a "
              "claim", file=sys.stderr)
    names = ["geovae vMF", "geovae PS", "power-spherical (PyPI)", "Wood loop (s-vae style)"]
    rates: dict[tuple, dict[str, list[float]]] = {}
    steps: dict[tuple, dict[str, list[float]]] = {}
    for seed in args.seeds:  # seed-outer: every row sees the same machine load pattern
        torch.manual_seed(seed)
        for batch in args.batches:
            for m in args.dims:
                for kappa in args.kappas:
                    loc = torch.nn.functional.normalize(torch.randn(batch, m), dim=-1)
                    k = torch.full((batch,), kappa, requires_grad=True)
                    fns: list[Callable[[], object] | None] = [
                        partial(draw, VonMisesFisher, loc, k),
                        partial(draw, PowerSpherical, loc, k),
                        partial(draw, pyps.PowerSpherical, loc, k) if pyps else None,
                        partial(wood_loop_rsample, loc, k.detach()),
                    ]
                    for i, fn in enumerate(fns):
                        if fn is not None:
                            secs = timeit(fn, max_reps=1 if i == 3 else 50)
                            rates.setdefault((batch, m, kappa), {}).setdefault(
                                names[i], []).append(batch / secs)
                    print(f"seed {seed} batch {batch} m {m} kappa {kappa:g}: " + ", ".join(
                        f"{n} {v[-1]:,.0f}/s" for n, v in rates[batch, m, kappa].items()),
                        file=sys.stderr, flush=True)
        for batch in args.batches:
            for m in args.dims:
                raw = torch.randn(batch, m, requires_grad=True)
                kraw = (torch.rand(batch) * 99 + 1).requires_grad_(True)
                c = torch.randn(m)
                prior = HypersphericalUniform(m)
                for cls, name in ((VonMisesFisher, "geovae vMF"), (PowerSpherical, "geovae PS")):
                    secs = timeit(partial(train_step, cls, raw, kraw, c, prior))
                    steps.setdefault((batch, m), {}).setdefault(name, []).append(secs)
    present = [n for n in names if any(n in v for v in rates.values())]
    lines = [f"samples/s (one thread), one rsample per distribution, mean ± sd (ddof = 1) over "
             f"seeds {args.seeds}:", "",
             "| batch | m | kappa | " + " | ".join(present) + " |",
             "|---" * (3 + len(present)) + "|"]
    for (batch, m, kappa), per in rates.items():
        cells = [_fmt_ms(per[n]) if n in per else "n/a" for n in present]
        lines.append(f"| {batch} | {m} | {kappa:g} | " + " | ".join(cells) + " |")
    lines += ["", "ms per training step (rsample + closed-form KL to uniform, backward), "
              "kappa ~ U(1, 100), mean ± sd over seeds:", "",
              "| batch | m | geovae vMF | geovae PS |", "|---|---|---|---|"]
    for (batch, m), per in steps.items():
        lines.append(f"| {batch} | {m} | {_fmt_ms(per['geovae vMF'], 1e3, '.2f')} "
                     f"| {_fmt_ms(per['geovae PS'], 1e3, '.2f')} |")
    head = ("| row | A | B | n | A / B (geometric mean) | paired t p | Wilcoxon p "
            f"| verdict (t, p < {ALPHA}) |")
    lines += ["", "Paired across seeds on log throughput (samples/s; A / B > 1: A is faster):",
              "", head, "|---|---|---|---|---|---|---|---|"]
    lines += _ratio_rows(rates, [("geovae PS", "power-spherical (PyPI)"),
                                 ("geovae vMF", "geovae PS"),
                                 ("geovae vMF", "Wood loop (s-vae style)")],
                         lambda k: f"batch {k[0]}, m {k[1]}, kappa {k[2]:g}")
    lines += ["", "Paired across seeds on log step time (A / B > 1: A is slower):", "", head,
              "|---|---|---|---|---|---|---|---|"]
    lines += _ratio_rows(steps, [("geovae vMF", "geovae PS")],
                         lambda k: f"step ms, batch {k[0]}, m {k[1]}")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
