"""Profile one training epoch of `geovae fit`'s model: where the time goes, per op.

Run:  python benchmarks/profile_epoch.py [--data data/mouse10k_counts.h5ad] [--threads 0]
          [--batch-key COL]
      OMP_WAIT_POLICY=PASSIVE python benchmarks/profile_epoch.py --threads 2

Prints the thread settings, the epoch's wall and CPU seconds (the process's user + system
time: CPU well above threads x useful work means threads spin-waiting, which torch's profiler
books to the ops that wait), ms per step, and torch.profiler's table of the ops with the most
self CPU time. Set OMP_WAIT_POLICY / OMP_NUM_THREADS in the environment: they are read when
torch loads. ``--threads 0`` uses geovae's default (`geovae._threads.default_threads`).
``--no-profiler`` times the epoch without the profiler's overhead. ``--simulate``:
bench_vs_scvi.py's 20k-cell data; ``--model cgmvae``; ``--callers copy_ fill_``: where those
ops' calls come from.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "mouse10k_counts.h5ad")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--latent", default="euclidean")
    ap.add_argument("--batch-key", default=None, help="obs column of a batch covariate")
    ap.add_argument("--warmup-epochs", type=int, default=1)
    ap.add_argument("--rows", type=int, default=15, help="ops in the table")
    ap.add_argument("--no-profiler", action="store_true")
    ap.add_argument("--simulate", action="store_true",
                    help="bench_vs_scvi.py's data (20k x 2,000, batch key batch) instead of --data")
    ap.add_argument("--model", choices=["vae", "cgmvae"], default="vae")
    ap.add_argument("--epochs", type=int, default=1, help="profiled epochs (one fit)")
    ap.add_argument("--callers", nargs="*", default=[],
                    help="ops (e.g. copy_ fill_) whose calls are counted a step by thread and "
                         "by the chain of ops that called them")
    ap.add_argument("--fused-adam", action="store_true",
                    help="measure a proposal: AdamW(fused=True) instead of the trainer's "
                         "for-loop AdamW (same update rule, one kernel per parameter)")
    args = ap.parse_args()

    from geovae import _threads

    threads = args.threads or _threads.default_threads()
    import torch

    torch.set_num_threads(threads)
    import anndata as ad

    from geovae.models import GeoVAE
    from geovae.training.trainer import Trainer, TrainSettings

    if args.fused_adam:
        import geovae.training.trainer as trainer_mod

        def fused(module: torch.nn.Module, lr: float, weight_decay: float
                  ) -> torch.optim.Optimizer:
            params = [p for p in module.parameters() if p.requires_grad]
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)

        trainer_mod.make_optimizer = fused
    if args.simulate:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import vs_scvi_counts

        adata, args.batch_key, args.data = vs_scvi_counts(), "batch", Path("vs-scvi-20k")
    else:
        adata = ad.read_h5ad(args.data)
    from geovae.models.cgmvae import CGMVAE

    cls = CGMVAE if args.model == "cgmvae" else GeoVAE
    model = cls(adata, latent=args.latent, batch_key=args.batch_key, seed=0)
    source = model.source()
    print(f"{args.data.name}: {adata.n_obs} cells x {adata.n_vars} features; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
          f"{_threads.describe()}{'; AdamW fused' if args.fused_adam else ''}")
    if args.warmup_epochs:
        Trainer(model.module, source,
                TrainSettings(epochs=args.warmup_epochs, progress=False)).fit()
    trainer = Trainer(model.module, source, TrainSettings(epochs=args.epochs, progress=False))
    t, c = time.perf_counter(), time.process_time()
    if args.no_profiler:
        hist = trainer.fit()
        prof = None
    else:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            hist = trainer.fit()
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    steps = hist.total_steps
    print(f"{args.epochs} epoch(s): {wall:.2f} s wall, {cpu:.2f} s CPU (CPU/wall "
          f"{cpu / wall:.2f} with "
          f"{torch.get_num_threads()} thread(s)), {steps} steps, {1e3 * wall / steps:.1f} ms "
          f"per step (validation included){' , profiler on' if prof else ''}")
    if prof is not None:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
        if args.callers:
            print_callers(prof.events(), args.callers, steps)


def print_callers(events: list, ops: list[str], steps: int, top: int = 25) -> None:
    """Calls of each op in ``ops`` a step, by thread and by the chain of ops above it (the
    caller first, up to 4 levels; autograd's backward nodes included): where they come from."""
    threads = sorted({e.thread for e in events})
    for op in ops:
        name = op if "::" in op else "aten::" + op
        by: Counter = Counter()
        for e in events:
            if e.name != name:
                continue
            chain, p = [], e.cpu_parent
            while p is not None:
                chain.append(p.name)
                p = p.cpu_parent
            by[(threads.index(e.thread), " < ".join(chain[:4]) or "(top level)")] += 1
        total = sum(by.values())
        print(f"\n{name}: {total / steps:.1f} calls a step (threads numbered by id)")
        for (thread, chain), n in by.most_common(top):
            print(f"  {n / steps:6.2f}  thread {thread}  {chain}")


if __name__ == "__main__":
    main()
