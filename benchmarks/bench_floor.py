"""Distance to the limit: each epoch of one fit as a multiple of this machine's matmul floor.

Run:  OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_floor.py [--data vs-scvi|floor]
          [--cells 20000] [--genes 2000] [--threads 2] [--models vae cgmvae] [--epochs 10]
          [--json FILE]

What is timed: the epochs a user meets. For each model at its defaults (``GeoVAE`` /
``CGMVAE(adata, batch_key=..., seed=0)``: latent 10, one hidden layer of 128, NB, batch 128;
the c*GMΔVAE with its 20 components and its warm start) ONE fit, ``model.train(epochs=E,
progress=False)``, with torch at ``--threads`` threads and every training setting at its
default (so the batch builder runs on its own thread where the trainer turns it on: at >= 2
threads on the CPU, the steps then on threads - 1 torch threads). Each epoch's wall time,
and the training thread's CPU time, run from the end of the module's ``before_epoch`` hook to
the start of the next epoch's (the last: to ``after_training``): the steps, the validation
pass and early stopping's bookkeeping. Not in them: the set-up before the first epoch, the
c*GMΔVAE's mixture start (a GMM fit inside ``before_epoch``, reported as ``hook_s``), and its
merge / delete moves after training. The first epoch (first-call costs) is listed but left
out of the steady-state medians.

The floor (the honest one: the model's own products at the machine's speed for them):

1. every matrix product (``aten.mm / addmm / bmm / baddbmm``) of one training step, forward
   and backward, is recorded with its operands' shapes and strides (a torch dispatch mode), and
   those of one validation batch; for the c*GMΔVAE once per phase it trained in (``pretrain``:
   the VAE's loss; ``hold``: components fixed; ``mixture``), since each has other products;
2. each distinct product is timed alone in a loop (same shapes and memory layouts, warm
   caches) at 1 and at 2 torch threads: the step's floor is the sum of those times, the
   epoch's that times the steps plus the validation products scaled to the validation cells;
3. each epoch is reported as a multiple of both floors (1-thread and 2-thread products).
   Square products (256-512) give the peak GFLOP/s at each thread count.

Data: ``vs-scvi`` (default; what ``bench_vs_scvi.py`` trains on: 6 types, 2 batches, median
library 200, ~8 % non-zeros; batch key ``batch``) or ``floor`` (this script's data before
2026-12-07: 8 types, 2 conditions, ~29 % non-zeros; batch key ``condition``).

On a shared machine every time here is indicative: the product times are the fastest of
several tries; give the load (printed) with any number.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import EpochClock, cpu_model, emit, load_average, vs_scvi_counts  # noqa: E402

import geovae  # noqa: E402,F401  (before torch: the OpenMP wait policy)

MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm")
FLOOR_THREADS = (1, 2)


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


def floor_of(products: list[tuple], cache: dict[tuple, float]) -> tuple[float, int]:
    """(seconds, FLOPs) of a list of products each timed alone at torch's current thread
    count (distinct ones timed once; ``cache`` keyed by product)."""
    seconds = 0.0
    for p in products:
        if p not in cache:
            cache[p] = seconds_per_call(p)
        seconds += cache[p]
    return seconds, sum(flops(p) for p in products)


def phase_products(module, source, phase: str) -> tuple[list, list]:
    """(one training step's products, one 256-cell validation batch's) in ``phase``."""
    import torch

    from geovae.training.trainer import evaluate_sum

    if phase != "vae":
        from geovae.modules.mixture_start import set_phase

        set_phase(module, phase)
    batch = module.prepare(source.take(torch.arange(128)))

    def step() -> None:
        module.train()
        out = module.loss(batch, 0.5)  # KL weight < 1: no SVI update of the weights
        out.loss.backward()

    step_products = record_products(step)
    module.zero_grad(set_to_none=True)
    val_products = record_products(
        lambda: evaluate_sum(module, source, torch.arange(256), 256))
    if phase != "vae":
        set_phase(module, "mixture")
    return step_products, val_products


def measure(model_name: str, adata, batch_key: str, threads: int, epochs: int) -> dict:
    """One fit of one model at ``threads`` threads: its epochs, and the floors of its phases."""
    import torch

    from geovae.models import GeoVAE
    from geovae.models.cgmvae import CGMVAE

    torch.set_num_threads(threads)
    cls = CGMVAE if model_name == "cgmvae" else GeoVAE
    model = cls(adata, batch_key=batch_key, latent_dim=10, seed=0)
    clock = EpochClock(model.module)
    t0 = time.perf_counter()
    hist = model.train(epochs=epochs, progress=False)
    fit_s = time.perf_counter() - t0
    clock.detach()
    load_after_fit = load_average(3)
    steps = hist.total_steps // epochs
    n_val = len(hist.validation_indices)
    source = model.source()
    floors: dict[str, dict] = {}
    for phase in dict.fromkeys(clock.phases):
        step_p, val_p = phase_products(model.module, source, phase)
        f: dict = {"products_per_step": len(step_p)}
        for n in FLOOR_THREADS:
            torch.set_num_threads(n)
            cache: dict[tuple, float] = {}
            step_s, step_flops = floor_of(step_p, cache)
            val_s, val_flops = floor_of(val_p, cache)
            f[f"step_floor_ms_{n}t"] = round(1e3 * step_s, 3)
            f[f"epoch_floor_s_{n}t"] = round(steps * step_s + val_s * n_val / 256, 4)
            f[f"model_shapes_gflops_{n}t"] = round(step_flops / step_s / 1e9, 1)
            f["step_gflop"] = round(step_flops / 1e9, 4)
            f["epoch_gflop"] = round((steps * step_flops + val_flops * n_val / 256) / 1e9, 2)
        floors[phase] = f
    peaks = {}
    for n in FLOOR_THREADS:
        torch.set_num_threads(n)
        peaks[f"peak_gflops_{n}t"] = round(peak_gflops(), 1)
    torch.set_num_threads(threads)
    rows = clock.epochs()
    for r in rows:
        f = floors[r["phase"]]
        for n in FLOOR_THREADS:
            r[f"x_floor_{n}t"] = round(r["wall_s"] / f[f"epoch_floor_s_{n}t"], 2)
        r["ms_per_step"] = round(1e3 * r["wall_s"] / steps, 2)
        for k in ("wall_s", "thread_cpu_s", "process_cpu_s", "hook_s"):
            r[k] = round(r[k], 4)
    steady: dict[str, dict] = {}
    for phase in floors:
        later = [r for r in rows[1:] if r["phase"] == phase]
        if later:
            wall = statistics.median(r["wall_s"] for r in later)
            steady[phase] = {"epochs": len(later), "median_wall_s": round(wall, 3),
                             "median_thread_cpu_s": round(statistics.median(
                                 r["thread_cpu_s"] for r in later), 3),
                             **{f"x_floor_{n}t": round(
                                 wall / floors[phase][f"epoch_floor_s_{n}t"], 2)
                                for n in FLOOR_THREADS}}
    return {"model": model_name, "threads": threads, "epochs": epochs,
            "prefetch": threads >= 2, "steps_per_epoch": steps, "validation_cells": n_val,
            "fit_s": round(fit_s, 2), "floors": floors, **peaks, "steady": steady,
            "per_epoch": rows, "load_after_fit": load_after_fit}


def make_data(kind: str, cells: int, genes: int):
    """(AnnData, batch key) of ``--data``."""
    if kind == "vs-scvi":
        return vs_scvi_counts(cells, genes, seed=0), "batch"
    from geovae.datasets import simulate_counts

    return simulate_counts(n_cells=cells, n_genes=genes, n_types=8, n_conditions=2,
                           seed=0), "condition"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", choices=["vs-scvi", "floor"], default="vs-scvi")
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--threads", type=int, nargs="+", default=[2],
                    help="torch threads of the fit (one fit per value)")
    ap.add_argument("--models", nargs="+", default=["vae", "cgmvae"],
                    choices=["vae", "cgmvae"])
    ap.add_argument("--epochs", type=int, default=10, help="epochs of the one fit")
    ap.add_argument("--json", type=Path, default=None, help="append records (JSON lines)")
    args = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    adata, batch_key = make_data(args.data, args.cells, args.genes)
    nnz = adata.X.nnz / (adata.n_obs * adata.n_vars)
    print(f"{cpu_model()}; torch {torch.__version__}; data {args.data}: {args.cells} cells x "
          f"{args.genes} genes, {100 * nnz:.1f} % non-zeros; load {load_average(3)}")
    for model_name in args.models:
        for threads in args.threads:
            r = measure(model_name, adata, batch_key, threads, args.epochs)
            r.update(data=args.data, cells=args.cells, genes=args.genes, nonzeros=round(nnz, 4),
                     torch=torch.__version__, cpu=cpu_model(), load=load_average(3),
                     time=time.strftime("%Y-%m-%d %H:%M:%S"))
            print(f"\n{model_name}, {threads} thread(s), {r['steps_per_epoch']} steps + "
                  f"{r['validation_cells']} validation cells an epoch; peak GF/s "
                  f"{r['peak_gflops_1t']} (1 thread), {r['peak_gflops_2t']} (2)")
            for phase, f in r["floors"].items():
                print(f"  floor {phase}: {f['products_per_step']} products, "
                      f"{f['step_gflop']} GF a step; step {f['step_floor_ms_1t']} / "
                      f"{f['step_floor_ms_2t']} ms, epoch {f['epoch_floor_s_1t']} / "
                      f"{f['epoch_floor_s_2t']} s (1 / 2 threads)")
            print(f"  {'epoch':>5} {'phase':<8} {'wall s':>7} {'thr CPU':>7} {'ms/step':>7} "
                  f"{'x fl 1t':>7} {'x fl 2t':>7} {'hook s':>6}")
            for i, e in enumerate(r["per_epoch"]):
                print(f"  {i + 1:>5} {e['phase']:<8} {e['wall_s']:7.3f} "
                      f"{e['thread_cpu_s']:7.3f} {e['ms_per_step']:7.2f} {e['x_floor_1t']:7.2f} "
                      f"{e['x_floor_2t']:7.2f} {e['hook_s']:6.2f}")
            for phase, s in r["steady"].items():
                print(f"  steady {phase} ({s['epochs']} epochs after the first): median "
                      f"{s['median_wall_s']} s = {s['x_floor_1t']}x / {s['x_floor_2t']}x the "
                      "1- / 2-thread floor", flush=True)
            if args.json:
                emit(r, args.json)


if __name__ == "__main__":
    main()
