"""Where the training step's time goes beyond its matrix products: seconds an epoch and
microseconds a cell of the default VAE at several batch sizes (issue 26 item 4).

Run:  OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_batch_size.py [--threads 1]
          [--sizes 128 256 512 1024]

On bench_vs_scvi.py's data (20k x 2,000 NB counts, batch key), one `GeoVAE` per size (seed
0), one warm-up epoch, then two timed epochs of a fresh `Trainer` (validation included). A
step's fixed costs (op dispatch, Python, the optimiser's per-tensor work) shrink per cell as
the batch grows; its per-entry work (the NB head's dense passes over cells x genes) does not:
how much the time per cell falls with the batch says which of the two the step is made of.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import geovae  # noqa: E402,F401  (before torch: the OpenMP wait policy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    args = ap.parse_args()
    import torch
    from _common import vs_scvi_counts

    from geovae.models import GeoVAE
    from geovae.training.trainer import Trainer, TrainSettings

    torch.set_num_threads(args.threads)
    adata = vs_scvi_counts()
    print(f"{adata.n_obs} x {adata.n_vars}, torch {torch.__version__}, {args.threads} thread(s)")
    for size in args.sizes:
        model = GeoVAE(adata, batch_key="batch", seed=0)
        source = model.source()
        Trainer(model.module, source, TrainSettings(epochs=1, progress=False,
                                                    batch_size=size)).fit()
        trainer = Trainer(model.module, source,
                          TrainSettings(epochs=2, progress=False, batch_size=size))
        start = time.perf_counter()
        steps = trainer.fit().total_steps
        wall = time.perf_counter() - start
        print(f"batch {size:5d}: {wall / 2:.2f} s an epoch, {1e3 * wall / steps:.2f} ms a step, "
              f"{1e6 * wall / steps / size:.1f} us a cell", flush=True)


if __name__ == "__main__":
    main()
