"""CPU use per phase of ``geovae fit``: process CPU seconds / wall seconds, 1 and 2 threads.

Run:  python benchmarks/bench_phases.py [--cells 20000] [--genes 2000] [--epochs 10]
          [--threads 1 2] [--json FILE]

Writes `simulate_counts` data (8 types, batch key ``condition``) to a temporary .h5ad and
runs ``geovae fit DATA --batch-key condition --epochs E --threads T`` at its defaults (held-out
IWAE, posterior predictive check, kNN, Leiden, UMAP, marker genes, plot, write) in a fresh
process per thread count, the command's own code run in-process there with each phase's
function wrapped by a timer that reads the wall clock and the process's CPU time (every
thread's: torch's, numba's, igraph's). Per phase it reports wall s, CPU s and CPU / wall: near
1 a phase runs on one core, near T it keeps T cores busy; and the wall-time gain from the
second thread. Phases nest (the IWAE and PPC run inside ``fit``'s checks, after training):
each timer counts only its own function. Also the whole process's wall, CPU and peak RSS
(`_common.launch`). On a shared machine the ratios are indicative.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cpu_model, emit, launch, load_average  # noqa: E402

#: (phase, module, attribute[, class]) wrapped in the child
PHASES = (
    ("read", "geovae.runs.finish", "read", "Job"),
    ("train", "geovae.training.trainer", "fit", "Trainer"),
    ("latent", "geovae.models.base", "write_outputs", "GeoVAE"),
    ("heldout_iwae", "geovae.tools.evaluate", "heldout_loglik"),
    ("ppc", "geovae.tools.evaluate", "posterior_predictive_check"),
    ("knn", "scanpy.pp", "neighbors"),
    ("leiden", "scanpy.tl", "leiden"),
    ("umap", "scanpy.tl", "umap"),
    ("markers", "geovae.tools.markers", "name_clusters"),
    ("plot", "geovae.report.plot", "save_figure"),
    ("write_model", "geovae.models.persistence", "write_model_files"),
    ("write_h5ad", "geovae.io.backed", "write_any"),
)


def child(argv: list[str], out: Path) -> None:
    """Run ``geovae fit argv`` here with every phase timed; write the times to ``out``."""
    import importlib

    import geovae  # noqa: F401  (the wait policy before torch)

    times: dict[str, list[float]] = {}

    def wrap(name: str, fn):  # noqa: ANN001, ANN202
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                w = times.setdefault(name, [0.0, 0.0])
                w[0] += time.perf_counter() - t
                w[1] += time.process_time() - c
        return timed

    for name, mod, attr, *cls in PHASES:
        owner = importlib.import_module(mod)
        if cls:
            owner = getattr(owner, cls[0])
        setattr(owner, attr, wrap(name, getattr(owner, attr)))
    from geovae.cli import app

    t, c = time.perf_counter(), time.process_time()
    try:
        app(["fit", *argv], standalone_mode=False)
    finally:
        total = [time.perf_counter() - t, time.process_time() - c]
        out.write_text(json.dumps({"phases": times, "command": total}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path, default=None, help="append records (JSON lines)")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[1:], Path(args.child[0]))
        return
    sys.path.insert(0, str(ROOT / "src"))
    from geovae.datasets import simulate_counts

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        data = d / "data.h5ad"
        simulate_counts(n_cells=args.cells, n_genes=args.genes, n_types=8, n_conditions=2,
                        seed=0).write_h5ad(data)
        for threads in args.threads:
            times = d / f"times_{threads}.json"
            cmd = [sys.executable, __file__, "--child", str(times), str(data), "--out",
                   str(d / f"out_{threads}.h5ad"), "--batch-key", "condition", "--epochs",
                   str(args.epochs), "--threads", str(threads), "--quiet"]
            load = load_average(3)
            with (d / "log").open("w") as log:
                m = launch(cmd, d / "usage", log, log, cwd=ROOT)
            if m.returncode:
                sys.exit(f"geovae fit failed ({m.returncode}): {(d / 'log').read_text()[-800:]}")
            got = json.loads(times.read_text())
            rows[threads] = got
            record = {"cells": args.cells, "genes": args.genes, "epochs": args.epochs,
                      "threads": threads, "load_before": load, "cpu": cpu_model(),
                      "process_wall_s": round(m.wall_s, 2), "process_cpu_s": round(m.cpu_s, 2),
                      "peak_rss_mb": round(m.peak_rss_mb), **got}
            if args.json:
                emit(record, args.json)
    print(f"{args.cells} cells x {args.genes} genes, {args.epochs} epochs; {cpu_model()}")
    head = "".join(f" | {t} thr wall s | CPU/wall" for t in args.threads)
    print(f"| phase{head} | wall {args.threads[0]} / {args.threads[-1]} thr |")
    names = [p[0] for p in PHASES] + ["command"]
    for name in names:
        cells = []
        for t in args.threads:
            w, c = (rows[t]["command"] if name == "command" else
                    rows[t]["phases"].get(name, [0.0, 0.0]))
            cells.append(f" | {w:.2f} | {c / w if w else 0:.2f}")
        w0 = (rows[args.threads[0]]["command"] if name == "command" else
              rows[args.threads[0]]["phases"].get(name, [0.0]))[0]
        w1 = (rows[args.threads[-1]]["command"] if name == "command" else
              rows[args.threads[-1]]["phases"].get(name, [0.0]))[0]
        print(f"| {name}{''.join(cells)} | {w0 / w1 if w1 else 0:.2f} |")


if __name__ == "__main__":
    main()
