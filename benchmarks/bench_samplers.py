"""Sampler throughput on the sphere: geovae's vMF and Power Spherical against the PyPI
``power-spherical`` package and a Python-loop Wood rejection sampler in the style of
s-vae-pytorch; plus the time of one training step (rsample + KL to uniform, backward).

Each row draws one sample from each of ``batch`` distributions (random unit locs, one kappa),
``rsample`` with kappa requiring grad. samples/s = batch / median seconds per call. geovae's
vMF draws w by the exact inverse CDF at m = 3 and by Wood's batched sampler otherwise (with
the implicit kappa gradient attached). The loop sampler draws w one sample at a time with a
``while`` loop and one host sync (``.item()``) per proposal, as s-vae-pytorch's reference
code does; it is timed once per row. The PyPI package is optional: install it apart from the
project, e.g. ``pip install --no-deps --target /tmp/target power-spherical`` and pass
``--extra-path /tmp/target``.

Usage::

    python benchmarks/bench_samplers.py [--extra-path /tmp/target] [--out FILE.md]
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

import torch
from torch.distributions import Beta, kl_divergence

from geovae.distributions import HypersphericalUniform, PowerSpherical, VonMisesFisher
from geovae.distributions.hyperspherical_uniform import tangent_sample


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra-path", default=None, help="folder holding power_spherical")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.extra_path:
        sys.path.insert(0, args.extra_path)
    try:
        import power_spherical as pyps  # type: ignore[import-not-found]
    except ImportError:
        pyps = None
    names = ["geovae vMF", "geovae PS", "power-spherical (PyPI)", "Wood loop (s-vae style)"]
    lines = ["samples/s (one thread), one rsample per distribution:", "",
             "| batch | m | kappa | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for batch in (128, 4096):
        for m in (3, 10, 65):
            for kappa in (1.0, 10.0, 100.0):
                loc = torch.nn.functional.normalize(torch.randn(batch, m), dim=-1)
                k = torch.full((batch,), kappa, requires_grad=True)
                fns: list[Callable[[], object] | None] = [
                    partial(draw, VonMisesFisher, loc, k),
                    partial(draw, PowerSpherical, loc, k),
                    partial(draw, pyps.PowerSpherical, loc, k) if pyps else None,
                    partial(wood_loop_rsample, loc, k.detach()),
                ]
                cells = []
                for i, fn in enumerate(fns):
                    if fn is None:
                        cells.append("n/a")
                        continue
                    secs = timeit(fn, max_reps=1 if i == 3 else 50)
                    cells.append(f"{batch / secs:,.0f}")
                lines.append(f"| {batch} | {m} | {kappa:g} | " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
    lines += ["", "ms per training step (rsample + closed-form KL to uniform, backward), "
              "kappa ~ U(1, 100):", "", "| batch | m | geovae vMF | geovae PS |",
              "|---|---|---|---|"]
    for batch in (128, 4096):
        for m in (3, 10, 65):
            raw = torch.randn(batch, m, requires_grad=True)
            kraw = (torch.rand(batch) * 99 + 1).requires_grad_(True)
            c = torch.randn(m)
            prior = HypersphericalUniform(m)
            cells = []
            for cls in (VonMisesFisher, PowerSpherical):
                secs = timeit(partial(train_step, cls, raw, kraw, c, prior))
                cells.append(f"{secs * 1e3:.2f}")
            lines.append(f"| {batch} | {m} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
