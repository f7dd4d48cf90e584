"""Time per epoch and peak memory of `geovae fit` on the bundled data.

Run:  python benchmarks/bench_fit.py [--epochs 30] [--threads 1]
Each configuration runs in a fresh subprocess, so peak RSS (ru_maxrss) is its own. Prints a
markdown table; with --write, replaces the "Fit speed and memory" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cpu_model, replace_section  # noqa: E402

CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import torch, anndata as ad, geovae
from geovae.models import GeoVAE
path, epochs, threads, latent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
a = geovae.read(path)
t0 = time.perf_counter()
m = GeoVAE(a, latent=latent, seed=0)
setup = time.perf_counter() - t0
t1 = time.perf_counter()
h = m.train(epochs=epochs, progress=False, patience=10**9)
train = time.perf_counter() - t1
t2 = time.perf_counter()
z = m.get_latent(a)
infer = time.perf_counter() - t2
print(json.dumps({"cells": a.n_obs, "features": a.n_vars, "epochs": len(h.train),
    "setup_s": setup, "s_per_epoch": train / len(h.train), "latent_s": infer,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CONFIGS = [
    ("pbmc68k_counts.h5ad", "euclidean"),
    ("pbmc68k_counts.h5ad", "sphere"),
    ("pbmc68k_counts.h5ad", "hyperbolic"),
    ("mouse10k_counts.h5ad", "euclidean"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = ap.parse_args()
    rows = []
    for name, latent in CONFIGS:
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "data" / name),
                              str(args.epochs), str(args.threads), latent],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(f"| {name} | {r['cells']} x {r['features']} | {latent} | {r['epochs']} | "
                    f"{r['s_per_epoch']:.3f} | {r['s_per_epoch'] / r['cells'] * 1e6:.1f} | "
                    f"{r['latent_s']:.2f} | {r['peak_rss_mb']:.0f} |")
        print(rows[-1], flush=True)
    cpu = _cpu_name()
    table = "\n".join([
        "## Fit speed and memory",
        "",
        f"Command: `python benchmarks/bench_fit.py --epochs {args.epochs} --threads "
        f"{args.threads} --write`. Machine: {cpu}, torch {_torch()} on CPU, "
        f"{args.threads} thread(s). Sparse counts stay CSR on the device; only minibatches "
        "of 128 cells are densified. Peak RSS is the whole process (Python, torch, scanpy).",
        "",
        "| data | cells x features | latent | epochs | s / epoch | µs / cell / epoch | "
        "latent (all cells) s | peak RSS MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows, ""])
    print(table)
    if args.write:
        replace_section(ROOT / "benchmarks" / "RESULTS.md", "## Fit speed and memory", table)


def _cpu_name() -> str:
    """CPU model and core count, for the results header."""
    import os

    return f"{cpu_model()}, {os.cpu_count()} cores, no GPU used"


def _torch() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
