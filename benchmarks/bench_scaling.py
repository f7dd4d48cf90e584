"""Scaling: cells/s and peak RSS of geovae on 10k-1M cells x 2,000 genes, in memory and backed.

Each (file, mode) runs in its own process (``--worker``), so peak RSS (``ru_maxrss``) is that
run's alone. A run: read the file (in memory: ``anndata.read_h5ad``; backed: geovae's backed
reader, X left on disk), set up the model (data checks: one streaming pass when backed), train
``--steps`` minibatch steps (batch 128, the trainer's loss/backward/step loop, the source's
training order), then the latent of every cell (``get_latent``, batches of 1,024). Reported:
seconds of each phase, training and latent cells/s, peak RSS.

    python benchmarks/make_synthetic.py --cells 10000 100000 1000000 --out-dir DATA_DIR
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_scaling.py \\
        DATA_DIR/synthetic_{10000,100000,1000000}x2000.h5ad --json scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def train_steps(module, source, steps: int, batch_size: int) -> float:  # noqa: ANN001
    """``steps`` minibatch steps in the source's training order; returns the mean loss. Its
    own function, as in the trainer, so the epoch's order and the reader's windows are freed
    when training ends (before the latent pass), whether or not the last epoch was finished."""
    import torch

    from geovae.training.parts import make_optimizer

    opt = make_optimizer(module, 1e-3, 1e-6)
    gen = torch.Generator().manual_seed(0)
    idx = torch.arange(source.n_obs)
    done, total = 0, torch.zeros(())
    while done < steps:
        batches = source.batches(source.shuffle(idx, gen), batch_size, drop_last=True)
        for batch in batches:
            out = module.loss(batch, kl_weight=1.0)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            total += out.loss.detach()
            done += 1
            if done == steps:
                break
        batches.close()
    return float(total) / steps


def worker(path: Path, mode: str, steps: int, batch_size: int, latent: bool) -> dict:
    """One run in this process; returns its measurements."""
    import resource

    import torch

    torch.set_num_threads(1)
    from geovae.models import GeoVAE

    t0 = time.perf_counter()
    if mode == "backed":
        from geovae.io.backed import read_backed

        adata = read_backed(path)
    else:
        import anndata as ad

        adata = ad.read_h5ad(path)
    t_read = time.perf_counter()
    model = GeoVAE(adata, batch_key="batch", seed=0)
    model.device = torch.device("cpu")
    source = model.source()
    t_setup = time.perf_counter()
    loss = train_steps(model.module.train(), source, steps, batch_size)
    t_train = time.perf_counter()
    if latent:
        z = model.get_latent()
        assert z.shape[0] == source.n_obs
    t_latent = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"file": str(path), "cells": source.n_obs, "mode": mode, "steps": steps,
            "batch_size": batch_size, "read_s": t_read - t0, "setup_s": t_setup - t_read,
            "train_s": t_train - t_setup, "latent_s": t_latent - t_train if latent else None,
            "train_cells_per_s": steps * batch_size / (t_train - t_setup),
            "latent_cells_per_s": source.n_obs / (t_latent - t_train) if latent else None,
            "mean_loss": loss, "peak_rss_bytes": rss}


def run(path: Path, mode: str, steps: int, batch_size: int, latent: bool) -> dict:
    """``worker`` in a fresh, niced, single-threaded process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = ["nice", "-n", "10", sys.executable, __file__, "--worker", str(path), "--mode", mode,
           "--steps", str(steps), "--batch-size", str(batch_size)]
    if not latent:
        cmd.append("--no-latent")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        return {"file": str(path), "mode": mode, "error": res.stderr.strip().splitlines()[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    head = ("| cells | mode | read + setup s | train cells/s | latent cells/s | peak RSS MB |\n"
            "|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['file']} | {r['mode']} | error: {r['error']} | | | |")
            continue
        lat = f"{r['latent_cells_per_s']:,.0f}" if r["latent_cells_per_s"] else "-"
        lines.append(f"| {r['cells']:,} | {r['mode']} | {r['read_s'] + r['setup_s']:.1f} | "
                     f"{r['train_cells_per_s']:,.0f} | {lat} | "
                     f"{r['peak_rss_bytes'] / 1e6:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--modes", nargs="+", default=["memory", "backed"],
                    choices=["memory", "backed"])
    ap.add_argument("--steps", type=int, default=1000, help="training steps per run")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--no-latent", action="store_true", help="skip the latent pass")
    ap.add_argument("--json", type=Path, help="also append the records to this file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="backed", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.files[0], args.mode, args.steps, args.batch_size,
                                not args.no_latent)))
        return
    rows = []
    for path in args.files:
        for mode in args.modes:
            rows.append(run(path, mode, args.steps, args.batch_size, not args.no_latent))
            print(json.dumps(rows[-1]), flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(rows[-1]) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
