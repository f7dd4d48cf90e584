"""Seconds an epoch for torch's thread count x the batch-building thread, one process each.

Run:  python benchmarks/bench_builder_threads.py DATA.h5ad THREADS {on,off,auto} [--batch-key batch]

Trains a VAE at its defaults (one warm-up epoch, then 2 x 2 epochs) on ``DATA`` with
``torch.set_num_threads(THREADS)`` and ``TrainSettings.prefetch`` on / off / auto (geovae's
default: on for the CPU with >= 2 threads, the steps then taking one thread fewer,
`geovae.training.parts.core_for_builder`), and prints seconds an epoch and the process's
CPU / wall. Start one process per configuration, alternating, on an otherwise idle machine:
the numbers compare only within one session. ``bench_vs_scvi.py`` writes the 20k x 2,000 data
used in RESULTS.md (``--work``/synthetic_20000x2000_s0.h5ad).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what `import geovae` sets

import geovae  # noqa: E402,F401  (before torch: the OpenMP wait policy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("threads", type=int)
    ap.add_argument("prefetch", choices=["on", "off", "auto"])
    ap.add_argument("--batch-key", default="batch")
    args = ap.parse_args()
    import anndata as ad
    import torch

    from geovae.models import GeoVAE
    from geovae.training.trainer import Trainer, TrainSettings

    prefetch = {"on": True, "off": False, "auto": None}[args.prefetch]
    torch.set_num_threads(args.threads)
    adata = ad.read_h5ad(args.data)
    model = GeoVAE(adata, batch_key=args.batch_key, seed=0)
    source = model.source()
    Trainer(model.module, source, TrainSettings(epochs=1, progress=False,
                                                prefetch=prefetch)).fit()
    for _ in range(2):
        wall, cpu = time.perf_counter(), time.process_time()
        Trainer(model.module, source, TrainSettings(epochs=2, progress=False,
                                                    prefetch=prefetch)).fit()
        wall = time.perf_counter() - wall
        print(f"threads={args.threads} prefetch={args.prefetch}: {wall / 2:.2f} s/epoch, "
              f"cpu/wall {(time.process_time() - cpu) / wall:.2f}", flush=True)


if __name__ == "__main__":
    main()
