"""Profile one training epoch of `geovae fit`'s model: where the time goes, per op.

Run:  python benchmarks/profile_epoch.py [--data data/mouse10k_counts.h5ad] [--threads 0]
          [--batch-key COL]
      OMP_WAIT_POLICY=PASSIVE python benchmarks/profile_epoch.py --threads 2

Prints the thread settings, the epoch's wall and CPU seconds (the process's user + system
time: CPU well above threads x useful work means threads spin-waiting, which torch's profiler
books to the ops that wait), ms per step, and torch.profiler's table of the ops with the most
self CPU time. Set OMP_WAIT_POLICY / OMP_NUM_THREADS in the environment: they are read when
torch loads. ``--threads 0`` uses geovae's default (`geovae._threads.default_threads`).
``--no-profiler`` times the epoch without the profiler's overhead.
"""

from __future__ import annotations

import argparse
import os
import time
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
    adata = ad.read_h5ad(args.data)
    model = GeoVAE(adata, latent=args.latent, batch_key=args.batch_key, seed=0)
    source = model.source()
    print(f"{args.data.name}: {adata.n_obs} cells x {adata.n_vars} features; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; "
          f"{_threads.describe()}{'; AdamW fused' if args.fused_adam else ''}")
    if args.warmup_epochs:
        Trainer(model.module, source,
                TrainSettings(epochs=args.warmup_epochs, progress=False)).fit()
    trainer = Trainer(model.module, source, TrainSettings(epochs=1, progress=False))
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
    print(f"one epoch: {wall:.2f} s wall, {cpu:.2f} s CPU (CPU/wall {cpu / wall:.2f} with "
          f"{torch.get_num_threads()} thread(s)), {steps} steps, {1e3 * wall / steps:.1f} ms "
          f"per step (validation included){' , profiler on' if prof else ''}")
    if prof is not None:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
