"""Distance to the limit: each epoch's time as a multiple of this machine's matmul floor.

Run:  OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_floor.py [--cells 20000] [--genes 2000]
          [--threads 1 2] [--models vae cgmvae] [--epochs 2] [--json FILE]

For each model at its defaults (latent 10, one hidden layer of 128, NB, batch 128, batch key
of 2 conditions; the c*GMΔVAE with its default 20 components) on `simulate_counts` data:

1. records every matrix product (``aten.mm / addmm / bmm / baddbmm``) of one training step,
   forward and backward, with its operands' shapes and strides (a torch dispatch mode), and
   counts its FLOPs (2·m·k·n per product), and those of the validation pass per cell;
2. times each distinct product alone in a loop at that thread count (the same shapes and
   memory layouts, warm caches): this machine's sustained GFLOP/s at the model's shapes; the
   step's **floor** is the sum of those times, the epoch's floor that times the steps plus
   the validation pass's products. square products (256-512) give the peak GFLOP/s;
3. trains ``--epochs`` single epochs after one warm-up epoch (the trainer's own loop,
   validation included) and reports the fastest epoch's wall time (and its process CPU
   time) as a multiple of the floor.

On a shared machine both are the fastest of several tries, taken minutes apart in one
process: indicative; rerun to see their spread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import cpu_model, emit, load_average  # noqa: E402

import geovae  # noqa: E402,F401  (before torch: the OpenMP wait policy)

MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm")


def record_products(fn) -> list[tuple[str, tuple, tuple, tuple, tuple]]:
    """Run ``fn`` and return its matrix products as (op, shape A, stride A, shape B,
    stride B); for addmm / baddbmm the two multiplied operands."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[tuple[str, tuple, tuple, tuple, tuple]] = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in MATMUL_OPS:
                a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else args[:2]
                seen.append((name, tuple(a.shape), tuple(a.stride()), tuple(b.shape),
                             tuple(b.stride())))
            return func(*args, **(kwargs or {}))

    with Spy():
        fn()
    del torch
    return seen


def flops(product: tuple) -> int:
    """2·m·k·n (times the batch for bmm) of one recorded product."""
    _, sa, _, sb, _ = product
    batch = sa[0] if len(sa) == 3 else 1
    m, k = sa[-2], sa[-1]
    return 2 * batch * m * k * sb[-1]


def seconds_per_call(product: tuple, min_time: float = 0.2) -> float:
    """Time of one product alone, at its recorded shapes and memory layout: the fastest of
    several 10-call averages (on a shared machine the others include other jobs' time)."""
    import torch

    op, sa, st_a, sb, st_b = product
    a = torch.empty_strided(sa, st_a).normal_()
    b = torch.empty_strided(sb, st_b).normal_()
    fn = torch.bmm if op in ("bmm", "baddbmm") else torch.mm
    for _ in range(3):
        fn(a, b)
    reps, total = 0, 0.0
    times = []
    while total < min_time or reps < 5:
        t = time.perf_counter()
        for _ in range(10):
            fn(a, b)
        dt = (time.perf_counter() - t) / 10
        times.append(dt)
        total += dt * 10
        reps += 1
    return min(times)


def peak_gflops(sizes: tuple[int, ...] = (256, 384, 512)) -> float:
    """Best GFLOP/s of n x n x n float32 products (`seconds_per_call`); small
    enough that one call fits in a time slice of a shared machine."""
    prods = [("mm", (n, n), (n, 1), (n, n), (n, 1)) for n in sizes]
    return max(flops(p) / seconds_per_call(p, 0.3) / 1e9 for p in prods)


def floor_of(products: list[tuple]) -> tuple[float, int]:
    """(seconds, FLOPs) of a list of products each timed alone (distinct ones timed once)."""
    cache: dict[tuple, float] = {}
    seconds = 0.0
    for p in products:
        if p not in cache:
            cache[p] = seconds_per_call(p)
        seconds += cache[p]
    return seconds, sum(flops(p) for p in products)


def measure(model_name: str, adata, threads: int, epochs: int) -> dict:
    """One model at one thread count: its step's products, floor and epoch time."""
    import torch

    from geovae.models import GeoVAE
    from geovae.models.cgmvae import CGMVAE
    from geovae.training.trainer import Trainer, TrainSettings, evaluate_sum

    torch.set_num_threads(threads)
    cls = CGMVAE if model_name == "cgmvae" else GeoVAE
    model = cls(adata, batch_key="condition", latent_dim=10, seed=0)
    source, module = model.source(), model.module
    settings = TrainSettings(epochs=1, progress=False, patience=10**9)
    Trainer(module, source, settings).fit()  # warm-up epoch (allocator, first-call costs)
    idx = torch.arange(128)
    batch = source.take(idx)

    def step() -> None:
        module.train()
        out = module.loss(batch, 0.5)
        out.loss.backward()

    step_products = record_products(step)
    module.zero_grad(set_to_none=True)
    val_cells = 256
    val_products = record_products(
        lambda: evaluate_sum(module, source, torch.arange(val_cells), 256))
    step_floor, step_flops = floor_of(step_products)
    val_floor, val_flops = floor_of(val_products)
    runs = []  # (wall, CPU) of single-epoch fits; the fastest is the least disturbed
    for _ in range(epochs):
        t, c = time.perf_counter(), time.process_time()
        hist = Trainer(module, source, TrainSettings(epochs=1, progress=False)).fit()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    wall, cpu = min(runs)
    steps = hist.total_steps
    n_val = len(hist.validation_indices)
    epoch_floor = steps * step_floor + val_floor * n_val / val_cells
    epoch_flops = steps * step_flops + val_flops * n_val / val_cells
    peak = peak_gflops()
    return {
        "model": model_name, "threads": threads, "steps_per_epoch": steps,
        "validation_cells": n_val, "products_per_step": len(step_products),
        "step_gflop": round(step_flops / 1e9, 4), "epoch_gflop": round(epoch_flops / 1e9, 2),
        "peak_gflops": round(peak, 1),
        "model_shapes_gflops": round(step_flops / step_floor / 1e9, 1),
        "step_floor_ms": round(1e3 * step_floor, 3),
        "epoch_floor_s": round(epoch_floor, 3), "epoch_floor_at_peak_s":
            round(epoch_flops / peak / 1e9, 3),
        "epoch_s": round(wall, 3), "epoch_cpu_s": round(cpu, 3),
        "epochs_s": [round(w, 3) for w, _ in runs],
        "ms_per_step": round(1e3 * wall / steps, 2),
        "multiple_of_floor": round(wall / epoch_floor, 2),
        "multiple_of_peak_floor": round(wall / (epoch_flops / peak / 1e9), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--models", nargs="+", default=["vae", "cgmvae"],
                    choices=["vae", "cgmvae"])
    ap.add_argument("--epochs", type=int, default=3,
                    help="timed single epochs (after one warm-up); the fastest counts")
    ap.add_argument("--json", type=Path, default=None, help="append records (JSON lines)")
    args = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from geovae.datasets import simulate_counts

    adata = simulate_counts(n_cells=args.cells, n_genes=args.genes, n_types=8,
                            n_conditions=2, seed=0)
    print(f"{cpu_model()}; torch {torch.__version__}; {args.cells} cells x {args.genes} "
          f"genes; load {load_average(3)}")
    print(f"{'model':<7} {'thr':>3} {'GF/step':>8} {'peak GF/s':>9} {'shape GF/s':>10} "
          f"{'floor s':>8} {'epoch s':>8} {'x floor':>8} {'x peak':>7}")
    for model_name in args.models:
        for threads in args.threads:
            r = measure(model_name, adata, threads, args.epochs)
            r.update(cells=args.cells, genes=args.genes, torch=torch.__version__,
                     cpu=cpu_model(), load=load_average(3))
            print(f"{model_name:<7} {threads:>3} {r['step_gflop']:8.3f} "
                  f"{r['peak_gflops']:9.1f} {r['model_shapes_gflops']:10.1f} "
                  f"{r['epoch_floor_s']:8.3f} {r['epoch_s']:8.3f} "
                  f"{r['multiple_of_floor']:8.2f} {r['multiple_of_peak_floor']:7.2f}",
                  flush=True)
            if args.json:
                emit(r, args.json)


if __name__ == "__main__":
    main()
