"""The tutorial's fit from Python (as in a notebook) against the same fit from the command
line, on a machine kept busy by other processes.

Run:  python benchmarks/bench_notebook.py [--cells 500] [--epochs 5] [--busy 2]

Data: the tutorial's reference, the CTRL cells of ``data/kang_counts.h5ad`` (``--cells``: a
seeded subset). Each configuration runs in a fresh process with ``OMP_WAIT_POLICY``,
``OMP_NUM_THREADS`` and ``NUMBA_NUM_THREADS`` removed from its environment (a user who set
nothing), beside ``--busy`` busy-loop processes on the same CPUs:

- ``python``: the notebook's cells, ``import scanpy``, ``import geovae``, then
  ``geovae.fit(reference, batch_key="stim", label_key="seurat_annotations", latent_dim=10,
  epochs=E)`` and ``geovae.cluster(reference)``;
- ``python, torch first``: the same with ``import torch`` before geovae and torch's own thread
  count (every CPU), i.e. what a notebook got before ``import geovae`` set the wait policy
  and ``fit`` its threads (geovae now warns about the import order);
- ``cli``: ``geovae fit REF.h5ad --batch-key stim --label-key seurat_annotations
  --latent-dim 10 --epochs E``, whose ``train`` and ``cluster_umap`` timings (metrics JSON)
  cover the same work as ``fit`` and ``cluster`` above.

Prints one markdown table: seconds of fit and of cluster (+ UMAP) per configuration and
their sum relative to the CLI's. Timings on a shared machine vary from run to run: repeat
(``--repeats``) before reading much into a ratio near 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIT = dict(batch_key="stim", label_key="seurat_annotations", latent_dim=10, seed=0)

NOTEBOOK = r"""
import json, sys, time
path, epochs, torch_first = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
if torch_first:
    import torch
import scanpy as sc
import geovae as gv
fit = json.loads(sys.argv[4])
if torch_first:
    fit["threads"] = torch.get_num_threads()  # torch's default: every CPU it sees
reference = gv.read(path)
t = time.perf_counter()
gv.fit(reference, epochs=epochs, progress=False, **fit)
t_fit = time.perf_counter() - t
t = time.perf_counter()
gv.cluster(reference, seed=0)
t_cluster = time.perf_counter() - t
print("BENCH " + json.dumps({"fit_s": t_fit, "cluster_s": t_cluster}), flush=True)
"""

BUSY = "import time\nend = time.time() + {secs}\nwhile time.time() < end:\n    pass\n"


def make_reference(data: Path, cells: int | None, out: Path) -> int:
    """The tutorial's reference (CTRL cells), a seeded subset of ``cells``, written to
    ``out``; returns the number of cells."""
    import numpy as np

    import geovae

    adata = geovae.read(data)
    ref = adata[adata.obs["stim"] == "CTRL"]
    if cells is not None and ref.n_obs > cells:
        keep = np.sort(np.random.default_rng(0).choice(ref.n_obs, cells, replace=False))
        ref = ref[keep]
    ref.copy().write_h5ad(out)
    return int(ref.n_obs)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env.pop(key, None)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run(config: str, ref: Path, epochs: int, busy: int, timeout: int) -> dict:
    """One configuration beside ``busy`` busy loops; seconds of fit and cluster."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY.format(secs=timeout + 60)])
             for _ in range(busy)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if config == "cli":
                metrics = Path(tmp) / "m.json"
                cmd = [sys.executable, "-m", "geovae", "fit", str(ref), "--batch-key", "stim",
                       "--label-key", "seurat_annotations", "--latent-dim", "10", "--epochs",
                       str(epochs), "--out", str(Path(tmp) / "o.h5ad"), "--metrics-json",
                       str(metrics), "--quiet"]
            else:
                cmd = [sys.executable, "-c", NOTEBOOK, str(ref), str(epochs),
                       "1" if config == "python, torch first" else "0", json.dumps(FIT)]
            t = time.perf_counter()
            out = subprocess.run(cmd, env=_env(), capture_output=True, text=True,
                                 timeout=timeout, cwd=tmp)
            wall = time.perf_counter() - t
            if out.returncode != 0:
                raise RuntimeError(f"{config} failed:\n{out.stderr[-2000:]}")
            if config == "cli":
                timings = json.loads(metrics.read_text())["timings"]
                fit_s, cluster_s = timings["train"], timings["cluster_umap"]
            else:
                line = [x for x in out.stdout.splitlines() if x.startswith("BENCH ")][-1]
                info = json.loads(line[6:])
                fit_s, cluster_s = info["fit_s"], info["cluster_s"]
    finally:
        for p in loops:
            p.terminate()
        for p in loops:
            p.wait()
    return {"config": config, "fit_s": fit_s, "cluster_s": cluster_s, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "kang_counts.h5ad")
    parser.add_argument("--cells", type=int, default=500, help="reference cells (0: all)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--busy", type=int, default=len(os.sched_getaffinity(0)),
                        help="busy-loop processes beside each run (default: one per CPU)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args()
    configs = ["cli", "python", "python, torch first"]
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference.h5ad"
        n = make_reference(args.data, args.cells or None, ref)
        rows = [run(c, ref, args.epochs, args.busy, args.timeout)
                for _ in range(args.repeats) for c in configs]
    cli = [r for r in rows if r["config"] == "cli"]
    base = sum(r["fit_s"] + r["cluster_s"] for r in cli) / len(cli)
    print(f"{n} cells, {args.epochs} epochs, {args.busy} busy loops, "
          f"{len(os.sched_getaffinity(0))} CPUs\n")
    print("| configuration | fit s | cluster+UMAP s | sum / CLI | whole process s |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        total = r["fit_s"] + r["cluster_s"]
        print(f"| {r['config']} | {r['fit_s']:.1f} | {r['cluster_s']:.1f} | "
              f"{total / base:.2f} | {r['wall_s']:.1f} |")


if __name__ == "__main__":
    main()
