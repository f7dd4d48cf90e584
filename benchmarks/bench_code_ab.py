"""Two versions of geovae's code, the same training epochs: a before/after of a speed change.

Run:  python benchmarks/bench_code_ab.py --old REV [--data FILE.h5ad] [--batch-key batch]
          [--epochs 1] [--rounds 4] [--threads 2] [--json FILE]

``--old`` is a git revision of this repository: its ``src/`` is exported to a temporary folder
(``git archive``) and compared with this checkout's ``src/``. Each round starts one process per
version, in alternating order (A B, B A, ...: both see the same machine load); a process loads
the data, builds the default model (``GeoVAE(adata, batch_key=...)``), trains one warm-up
epoch, then times ``--epochs`` epochs of the real `Trainer` (``TrainSettings`` defaults, the
fit's test split): wall s, the process's CPU s and the training thread's CPU s per epoch
(``time.thread_time`` in the loop's thread: the critical path; the batch builder's thread is
not in it), and ms of that thread per step. Prints the medians per version and their ratio,
with the load average at each run; on a shared machine the thread's CPU is the steadier
figure, and every timing is indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, emit, load_average  # noqa: E402


def child(data: Path, batch_key: str | None, epochs: int, threads: int) -> None:
    """Time the epochs with whatever geovae is first on the path; print one JSON line."""
    import geovae  # before torch: the OpenMP wait policy

    source_file = geovae.__file__  # the version this process runs
    import anndata as ad
    import torch

    from geovae.models import GeoVAE
    from geovae.training.parts import TEST_FRACTION
    from geovae.training.trainer import Trainer, TrainSettings

    torch.set_num_threads(threads)
    model = GeoVAE(ad.read_h5ad(data), batch_key=batch_key, seed=0)
    source = model.source()

    def settings(n: int) -> TrainSettings:
        return TrainSettings(epochs=n, progress=False, test_fraction=TEST_FRACTION)

    Trainer(model.module, source, settings(1)).fit()  # warm-up
    wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
    hist = Trainer(model.module, source, settings(epochs)).fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    thread = time.thread_time() - thread
    print(json.dumps({"geovae": source_file, "wall_epoch": wall / epochs,
                      "cpu_epoch": cpu / epochs, "thread_epoch": thread / epochs,
                      "thread_ms_step": 1e3 * thread / hist.total_steps,
                      "val_last": hist.validation[-1]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True, help="git revision to compare this checkout with")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "mouse10k_counts.h5ad")
    ap.add_argument("--batch-key", default=None)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="append one record (JSON line)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.data, args.batch_key, args.epochs, args.threads)
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.old],
                         check=True, capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          check=True, capture_output=True, text=True).stdout.strip()
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        paths = {"old": str(Path(tmp) / "src"), "new": str(ROOT / "src")}
        for r in range(args.rounds):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                env = {**os.environ, "PYTHONPATH": paths[name]}
                load = load_average()
                out = subprocess.run(
                    [sys.executable, __file__, "--child", "--old", rev, "--data",
                     str(args.data), "--epochs", str(args.epochs), "--threads",
                     str(args.threads)] + (["--batch-key", args.batch_key]
                                            if args.batch_key else []),
                    env=env, check=True, capture_output=True, text=True).stdout
                run = json.loads(out.strip().splitlines()[-1]) | {"round": r, "load": load}
                runs[name].append(run)
                print(name, json.dumps(run), flush=True)
    keys = ("wall_epoch", "cpu_epoch", "thread_epoch", "thread_ms_step")
    med = {n: {k: statistics.median(x[k] for x in rs) for k in keys} for n, rs in runs.items()}
    for k in keys:
        print(f"{k}: old {med['old'][k]:.4g}, new {med['new'][k]:.4g}, "
              f"new / old {med['new'][k] / med['old'][k]:.3f}")
    emit({"benchmark": "code_ab", "old": rev, "new": head, "data": str(args.data),
          "batch_key": args.batch_key, "epochs": args.epochs, "threads": args.threads,
          "medians": med, "runs": runs, "time": time.strftime("%Y-%m-%d %H:%M:%S")},
         args.json)


if __name__ == "__main__":
    main()
