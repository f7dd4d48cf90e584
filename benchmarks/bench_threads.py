"""`geovae fit` on a shared node: torch's default threads vs one thread vs geovae's default.

Run:  python benchmarks/bench_threads.py [--data data/mouse10k_counts.h5ad] [--epochs 5]
      python benchmarks/bench_threads.py knn [--sizes 20000 100000]

fit (the default): times the whole command ``geovae fit DATA --epochs N`` and its training
loop (``Trainer.fit``, wall and the process's CPU seconds: CPU ≫ threads × useful work means
threads spinning) in a fresh subprocess per configuration, so the environment variables take
effect before torch loads:

- ``old``: what geovae did before: torch's default thread count (every CPU it sees) and the
  OpenMP runtime's default wait policy (spin, then sleep);
- ``active``: the same with ``OMP_WAIT_POLICY=ACTIVE`` (threads only spin);
- ``one``: ``--threads 1``;
- ``new``: geovae's default now (``--threads 0``: `geovae._threads.default_threads`, and
  ``OMP_WAIT_POLICY=PASSIVE`` set by the ``geovae`` command before torch loads).

Each runs alone and beside ``--compete`` busy-loop processes (default: one per CPU this
process may use) pinned to the same CPUs; they stop by themselves after ``--timeout`` + 60 s
and are ended after each run. A run longer than ``--timeout`` is stopped and reported as such.

knn: times exact and approximate (pynndescent) kNN graphs, and the recall, on clustered
synthetic points of each geometry (`geovae.graph.neighbors`).

Prints a markdown table; ``--write`` appends it to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cpu_model, emit, load_average  # noqa: E402

CHILD = r"""
import importlib.abc, importlib.machinery, json, os, runpy, sys, time
mode, argv = sys.argv[1], sys.argv[2:]
info = {}

class Hook(importlib.abc.MetaPathFinder):
    # wraps Trainer.fit when geovae.training.trainer is first imported (after torch loads)
    def find_spec(self, name, path, target=None):
        if name != "geovae.training.trainer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            fit = module.Trainer.fit

            def timed(self):
                import torch
                t, c = time.perf_counter(), time.process_time()
                out = fit(self)
                info.update(train_s=time.perf_counter() - t, train_cpu_s=time.process_time() - c,
                            threads=torch.get_num_threads(), epochs=len(out.train))
                return out

            module.Trainer.fit = timed

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Hook())
info["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY", "unset")
sys.argv = ["geovae", *argv]
try:
    if mode == "old":  # before: no set_num_threads for --threads 0, no wait-policy default
        import geovae.cli as cli

        def old_set_threads(threads):
            if threads:
                import torch
                torch.set_num_threads(threads)

        cli._set_threads = old_set_threads
        cli.main()
    else:
        runpy.run_module("geovae", run_name="__main__")
except SystemExit as exc:
    info["exit"] = exc.code
info["omp_wait_policy_seen"] = os.environ.get("OMP_WAIT_POLICY", "unset")
print("BENCH " + json.dumps(info), flush=True)
"""

BUSY = "import os, sys, time\nos.sched_setaffinity(0, {cpus})\nend = time.time() + {secs}\n" \
       "while time.time() < end:\n    pass\n"

CONFIGS = {
    "old": ("torch default threads, default OpenMP wait (geovae before)", "old", None, []),
    "active": ("torch default threads, OMP_WAIT_POLICY=ACTIVE", "old", "ACTIVE", []),
    "one": ("--threads 1", "new", None, ["--threads", "1"]),
    "new": ("geovae default (--threads 0, PASSIVE)", "new", None, []),
}


def _cpus() -> set[int]:
    return os.sched_getaffinity(0)


def run_fit(config: str, data: Path, epochs: int, compete: int, timeout: int) -> dict:
    label, mode, wait, extra = CONFIGS[config]
    env = dict(os.environ)
    for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env.pop(k, None)
    if wait:
        env["OMP_WAIT_POLICY"] = wait
    busy = [subprocess.Popen([sys.executable, "-c",
                              BUSY.format(cpus=sorted(_cpus()), secs=timeout + 60)])
            for _ in range(compete)]
    load = load_average()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-c", CHILD, mode, "fit", str(data), "--epochs", str(epochs),
                   "--out", str(Path(tmp) / "out.h5ad"), "--quiet", *extra]
            t = time.perf_counter()
            try:
                out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                     timeout=timeout, cwd=tmp)
            except subprocess.TimeoutExpired:
                return {"config": config, "label": label, "compete": compete, "load": load,
                        "wall_s": None, "timeout": timeout}
            wall = time.perf_counter() - t
    finally:
        for p in busy:
            p.terminate()
        for p in busy:
            p.wait()
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("BENCH ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{config}: exit {out.returncode}\n{out.stderr[-2000:]}")
    info = json.loads(lines[-1][6:])
    return {"config": config, "label": label, "compete": compete, "load": load,
            "wall_s": wall, **info}


def fit_main(args: argparse.Namespace) -> str:
    compete = len(_cpus()) if args.compete is None else args.compete
    rows = []
    for n_busy in sorted({compete} if args.skip_alone else {0, compete}):
        for config in args.configs:
            rows.append(run_fit(config, args.data, args.epochs, n_busy, args.timeout))
            emit(rows[-1], None)
    table = ["| configuration | busy loops | threads | OMP_WAIT_POLICY | whole command s | "
             "training s | training CPU s | load before |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["wall_s"] is None:
            table.append(f"| {r['label']} | {r['compete']} | | | > {r['timeout']} (stopped) "
                         f"| | | {r['load']} |")
            continue
        table.append(f"| {r['label']} | {r['compete']} | {r['threads']} | "
                     f"{r['omp_wait_policy_seen']} | {r['wall_s']:.1f} | {r['train_s']:.1f} | "
                     f"{r['train_cpu_s']:.1f} | {r['load']} |")
    cmd = (f"python benchmarks/bench_threads.py --data {args.data.relative_to(ROOT)} "
           f"--epochs {args.epochs} --compete {compete} --timeout {args.timeout}")
    return _report(cmd, table)


KNN_CHILD = r"""
import json, sys, time
import numpy as np, torch
from geovae.geometry.manifolds import Lorentz
from geovae.graph.neighbors import ApproxKNN, knn_recall, knn_transformer
geometry, n, k, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
rng = np.random.default_rng(0)
d = 10
z = rng.normal(0, 3, (30, d))[rng.integers(0, 30, n)] + rng.normal(0, 1, (n, d))
if geometry == "sphere":
    z = np.hstack([z, np.full((n, 1), 2.0)]); z /= np.linalg.norm(z, axis=1, keepdims=True)
elif geometry == "hyperbolic":
    z = Lorentz().expmap0(torch.as_tensor(np.hstack([np.zeros((n, 1)), 0.5 * z]))).numpy()
X = z.astype(np.float32)
out = {"geometry": geometry, "n": n}
# compile NN-descent for this metric first (numba, once per process), on 2,000 points
t = time.perf_counter(); ApproxKNN(geometry, k, n_jobs=threads).fit_transform(X[:2000])
out["ann_compile_s"] = time.perf_counter() - t
t = time.perf_counter(); a = ApproxKNN(geometry, k, n_jobs=threads); a.fit_transform(X)
out["ann_s"] = time.perf_counter() - t
t = time.perf_counter()
out["recall"], out["recall_cells"] = knn_recall(X, a.indices_, a.distances_, geometry)
out["recall_s"] = time.perf_counter() - t
if sys.argv[5] == "1":
    t = time.perf_counter(); knn_transformer(geometry, k).fit_transform(X)
    out["exact_s"] = time.perf_counter() - t
print("BENCH " + json.dumps(out), flush=True)
"""


def knn_main(args: argparse.Namespace) -> str:
    rows = []
    for n in args.sizes:
        for geometry in ("euclidean", "sphere", "hyperbolic"):
            exact = "1" if n <= args.exact_up_to else "0"
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", KNN_CHILD, geometry, str(n),
                                  str(args.k), str(args.threads), exact],
                                 capture_output=True, text=True, timeout=args.timeout)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("BENCH ")]
            if not lines:
                raise RuntimeError(out.stderr[-2000:])
            rows.append({**json.loads(lines[-1][6:]), "load": load_average(),
                         "wall_s": time.perf_counter() - t})
            emit(rows[-1], None)
    table = ["| geometry | points | exact s | pynndescent s | numba compile s (once per "
             "process, 2,000 points) | recall (1,000 cells) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        exact = f"{r['exact_s']:.1f}" if "exact_s" in r else "not run"
        table.append(f"| {r['geometry']} | {r['n']:,} | {exact} | {r['ann_s']:.1f} | "
                     f"{r['ann_compile_s']:.1f} | {r['recall']:.4f} |")
    cmd = (f"python benchmarks/bench_threads.py knn --sizes {' '.join(map(str, args.sizes))} "
           f"--k {args.k} --threads {args.threads}")
    return _report(cmd, table)


def _machine() -> str:
    import torch

    return (f"{cpu_model()}, {os.cpu_count()} CPUs ({len(_cpus())} in this process's "
            f"affinity), torch {torch.__version__}, python {platform.python_version()}")


def _report(command: str, table: list[str]) -> str:
    """The section text: the command line, the machine, the table."""
    return "\n".join([f"Command: `{command}`. Machine: {_machine()}.", "", *table, ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="fit", choices=["fit", "knn"])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "mouse10k_counts.h5ad")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--configs", nargs="+", default=["old", "one", "new"],
                    choices=list(CONFIGS))
    ap.add_argument("--compete", type=int, default=None,
                    help="busy-loop processes beside each run (default: one per CPU)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per run")
    ap.add_argument("--skip-alone", action="store_true", help="fit: only the runs with the "
                    "busy loops")
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--exact-up-to", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2, help="knn: torch and numba threads")
    ap.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    args = ap.parse_args()
    args.data = args.data.resolve()
    text = knn_main(args) if args.what == "knn" else fit_main(args)
    print(text)
    if args.write:
        path = ROOT / "benchmarks" / "RESULTS.md"
        with path.open("a") as f:  # append only: others append sections too
            f.write("\n" + text)


if __name__ == "__main__":
    main()
