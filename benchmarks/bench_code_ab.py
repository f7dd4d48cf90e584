"""Two versions of geovae's code, the same training epochs: a before/after of a speed change.

Run:  python benchmarks/bench_code_ab.py --old REV [--data FILE.h5ad | --simulate 20000]
          [--batch-key batch] [--model vae] [--epochs 3] [--rounds 4] [--threads 2]
          [--json FILE]

``--old`` is a git revision of this repository: its ``src/`` is exported to a temporary folder
(``git archive``) and compared with this checkout's ``src/`` (recorded as ``new``: HEAD's
hash, ``+dirty`` where ``src/`` has changes not committed). Each round starts one process per
version, in alternating order (A B, B A, ...: both see the same machine load); a process loads
the data (``--simulate N``: bench_vs_scvi.py's synthetic counts of N cells made in memory,
batch key ``batch``), builds the default model (``GeoVAE`` or ``CGMVAE(adata,
batch_key=..., seed=0)``) and fits it ONCE for ``--epochs`` + 1 epochs at the defaults
(``model.train``, the batch builder as the trainer resolves it). The epochs after the first
are timed (`_common.EpochClock`: the steps, the validation pass and early stopping's
bookkeeping; not the set-up, the c*GMΔVAE's mixture start or its moves after training): wall
s, the process's CPU s and the training thread's CPU s per epoch (``time.thread_time`` in the
loop's thread: the critical path; the batch builder's thread is not in it), and ms of that
thread per step. Prints the medians per version and their ratio, with the load average at each
run; on a shared machine the thread's CPU is the steadier figure, and every timing is
indicative only.
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
from _common import ROOT, EpochClock, emit, load_average, vs_scvi_counts  # noqa: E402


def child(args: argparse.Namespace) -> None:
    """Time the epochs with whatever geovae is first on the path; print one JSON line."""
    import geovae  # before torch: the OpenMP wait policy

    source_file = geovae.__file__  # the version this process runs
    import anndata as ad
    import torch

    from geovae.models import GeoVAE
    from geovae.models.cgmvae import CGMVAE

    torch.set_num_threads(args.threads)
    adata = vs_scvi_counts(args.simulate) if args.simulate else ad.read_h5ad(args.data)
    cls = CGMVAE if args.model == "cgmvae" else GeoVAE
    model = cls(adata, batch_key=args.batch_key, seed=0)
    clock = EpochClock(model.module)
    hist = model.train(epochs=args.epochs + 1, progress=False)
    clock.detach()
    rows = clock.epochs()[1:]  # the first epoch left out (first-call costs)
    steps = hist.total_steps // (args.epochs + 1)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rows)

    print(json.dumps({"geovae": source_file, "wall_epoch": mean("wall_s"),
                      "cpu_epoch": mean("process_cpu_s"), "thread_epoch": mean("thread_cpu_s"),
                      "thread_ms_step": 1e3 * mean("thread_cpu_s") / steps,
                      "phases": [r["phase"] for r in rows], "val_last": hist.validation[-1]}))


def git(root: Path, *args: str) -> str:
    """``git -C root ARGS``'s output, stripped."""
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def code_label(root: Path) -> str:
    """What the "new" side runs, for the record: HEAD's short hash, with ``+dirty`` where
    ``src/`` differs from HEAD (uncommitted or untracked files: the child imports the working
    tree's ``src/``, not HEAD's)."""
    head = git(root, "rev-parse", "--short", "HEAD")
    return f"{head}+dirty" if git(root, "status", "--porcelain", "--", "src") else head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True, help="git revision to compare this checkout with")
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "mouse10k_counts.h5ad")
    ap.add_argument("--simulate", type=int, default=0,
                    help="cells of bench_vs_scvi.py's synthetic counts instead of --data")
    ap.add_argument("--batch-key", default=None)
    ap.add_argument("--model", choices=["vae", "cgmvae"], default="vae")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after the first)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="append one record (JSON line)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.simulate and args.batch_key is None:
        args.batch_key = "batch"
    if args.child:
        return child(args)
    rev = git(ROOT, "rev-parse", "--short", args.old)
    head = code_label(ROOT)
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    passed = ["--data", str(args.data), "--simulate", str(args.simulate), "--model",
              args.model, "--epochs", str(args.epochs), "--threads", str(args.threads)] + (
        ["--batch-key", args.batch_key] if args.batch_key else [])
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
                    [sys.executable, __file__, "--child", "--old", rev, *passed],
                    env=env, check=True, capture_output=True, text=True).stdout
                run = json.loads(out.strip().splitlines()[-1]) | {"round": r, "load": load}
                runs[name].append(run)
                print(name, json.dumps(run), flush=True)
    keys = ("wall_epoch", "cpu_epoch", "thread_epoch", "thread_ms_step")
    med = {n: {k: statistics.median(x[k] for x in rs) for k in keys} for n, rs in runs.items()}
    for k in keys:
        print(f"{k}: old {med['old'][k]:.4g}, new {med['new'][k]:.4g}, "
              f"new / old {med['new'][k] / med['old'][k]:.3f}")
    faster = sum(n["wall_epoch"] < o["wall_epoch"] for o, n in zip(runs["old"], runs["new"],
                                                                     strict=True))
    print(f"new faster (wall) in {faster}/{args.rounds} rounds; load {load_average(3)}")
    emit({"benchmark": "code_ab", "old": rev, "new": head, "data": str(args.data),
          "simulate": args.simulate, "model": args.model, "batch_key": args.batch_key,
          "epochs": args.epochs, "threads": args.threads, "medians": med, "runs": runs,
          "time": time.strftime("%Y-%m-%d %H:%M:%S")}, args.json)


if __name__ == "__main__":
    main()
