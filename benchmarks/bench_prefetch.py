"""Minibatches built on a second thread (`TrainSettings.prefetch`) vs inline: epoch wall time
and the training thread's own CPU time, alternating in one process.

Run:  python benchmarks/bench_prefetch.py [--data FILE.h5ad] [--batch-key batch]
          [--threads 2] [--rounds 4] [--json FILE]

Trains the default VAE (``GeoVAE(adata, batch_key=...)``) one epoch at a time, prefetch off
and on in turn (A B A B ...: both see the same machine load), after one warm-up epoch. Per
epoch: wall s, the process's CPU s (every thread) and the training thread's CPU s
(``time.thread_time`` in the loop's thread: the critical path's work; with prefetch the
gathering of rows leaves it). Reports the median of each over the rounds; the load average is
printed beside them (timings on a shared machine are indicative only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import ROOT, load_average  # noqa: E402

import geovae  # noqa: E402,F401  (before torch: the OpenMP wait policy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "mouse10k_counts.h5ad")
    ap.add_argument("--batch-key", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None, help="append one record (JSON line)")
    args = ap.parse_args()
    import anndata as ad
    import torch

    from geovae.models import GeoVAE
    from geovae.training.trainer import Trainer, TrainSettings

    torch.set_num_threads(args.threads)
    adata = ad.read_h5ad(args.data)
    model = GeoVAE(adata, batch_key=args.batch_key, seed=0)
    source = model.source()

    def epoch(prefetch: bool) -> tuple[float, float, float]:
        trainer = Trainer(model.module, source, TrainSettings(
            epochs=1, progress=False, prefetch=prefetch))
        w, c, t = time.perf_counter(), time.process_time(), time.thread_time()
        trainer.fit()
        return (time.perf_counter() - w, time.process_time() - c, time.thread_time() - t)

    epoch(False)  # warm-up
    runs: dict[str, list[tuple[float, float, float]]] = {"inline": [], "prefetch": []}
    load0 = load_average(3)
    for _ in range(args.rounds):
        for name, flag in (("inline", False), ("prefetch", True)):
            runs[name].append(epoch(flag))
    load1 = load_average(3)
    print(f"{args.data.name}: {adata.n_obs} cells x {adata.n_vars}; {args.threads} thread(s), "
          f"{args.rounds} rounds alternating; load {load0} -> {load1}")
    record = {"data": args.data.name, "cells": adata.n_obs, "genes": adata.n_vars,
              "threads": args.threads, "rounds": args.rounds, "load": [load0, load1]}
    for name, vals in runs.items():
        wall, cpu, main_cpu = (statistics.median(v[i] for v in vals) for i in range(3))
        print(f"{name:>8}: epoch {wall:.2f} s wall, {cpu:.2f} s CPU (all threads), "
              f"{main_cpu:.2f} s CPU in the training thread (medians)")
        record[name] = {"wall_s": [round(v[0], 3) for v in vals],
                        "cpu_s": [round(v[1], 3) for v in vals],
                        "training_thread_cpu_s": [round(v[2], 3) for v in vals]}
    if args.json:
        with args.json.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
