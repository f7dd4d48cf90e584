"""What the benchmark scripts share: a launcher that measures one subprocess on its own, the
machine's description, JSON-lines records and RESULTS.md sections."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: python of a separate virtual environment with scvi-tools (scANVI / SCVI rows), made with
#: python3 -m venv .venv-scvi && .venv-scvi/bin/pip install torch==2.13.0 scvi-tools
SCVI_PYTHON = os.environ.get("GEOVAE_SCVI_PYTHON", str(ROOT / ".venv-scvi" / "bin" / "python"))

# A child forked from a (large) benchmark process inherits its RSS high-water mark in
# ru_maxrss, so each measured command runs as the grandchild of this small launcher, which
# writes "exit code, peak RSS KiB, CPU s" of os.wait4's rusage to the file in argv[1].
LAUNCHER = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); "
            "_, st, ru = os.wait4(p.pid, 0); open(sys.argv[1], 'w').write("
            "f'{os.waitstatus_to_exitcode(st)} {ru.ru_maxrss} {ru.ru_utime + ru.ru_stime}')")


@dataclass
class Measured:
    """One command's exit code, wall seconds, peak RSS (MB) and CPU seconds, its own alone."""

    returncode: int
    wall_s: float
    peak_rss_mb: float
    cpu_s: float


def launch(cmd: list[str], usage: Path, stdout, stderr, env: dict[str, str] | None = None,
           cwd: Path | None = None) -> Measured:
    """Run ``cmd`` to completion through `LAUNCHER`; ``usage`` is its rusage file."""
    usage.unlink(missing_ok=True)
    t0 = time.perf_counter()
    launcher = subprocess.run([sys.executable, "-c", LAUNCHER, str(usage), *cmd], env=env,
                              cwd=cwd, stdout=stdout, stderr=stderr, check=False)
    wall = time.perf_counter() - t0
    if not usage.exists():
        raise RuntimeError(f"the launcher failed ({launcher.returncode}) for {cmd[:4]}")
    code, maxrss_kb, cpu = usage.read_text().split()
    return Measured(int(code), wall, int(maxrss_kb) / 1024, float(cpu))


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average(n: int = 1) -> str:
    """The first ``n`` load averages of /proc/loadavg ("?" where there is none)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:n])
    except OSError:
        return "?"


def cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def emit(record: dict, path: Path | None) -> None:
    """Print one record as a JSON line and, with ``path``, append it there."""
    line = json.dumps(record)
    print(line, flush=True)
    if path:
        with Path(path).open("a") as fh:
            fh.write(line + "\n")


def replace_section(path: Path, heading: str, text: str) -> None:
    """Replace the section under ``heading`` (up to the next '## ') or append it."""
    old = path.read_text() if path.exists() else "# Benchmark results\n\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == heading), None)
    if start is None:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    path.write_text("".join(lines[:start]) + text + "\n" + "".join(lines[end:]))


def add_record_options(ap: argparse.ArgumentParser) -> None:
    """``--json`` (append the runs' records) and ``--summary`` (tabulate earlier records)."""
    ap.add_argument("--json", type=Path, default=None, help="append records (JSON lines)")
    ap.add_argument("--summary", type=Path, default=None,
                    help="only print tables and paired tests from this JSON-lines file")


def runs_wanted(args: argparse.Namespace, summarise: Callable[[Path], None]) -> bool:
    """With ``--summary FILE`` print its tables and say no runs are wanted; otherwise set
    torch to one thread (every run is single-threaded) and say yes."""
    if args.summary:
        summarise(args.summary)
        return False
    import torch

    torch.set_num_threads(1)
    return True


#: `simulate_counts` keyword arguments of the data `bench_vs_scvi.py` trains on (6 types, 2
#: batches, median library ~200, ~8 % non-zeros): what the speed claims are measured on
VS_SCVI_DATA = {"n_types": 6, "n_conditions": 1, "n_batches": 2, "library_mean": 200.0,
                "mean_shape": 0.3}


def vs_scvi_counts(cells: int = 20000, genes: int = 2000, seed: int = 0):
    """`bench_vs_scvi.py`'s synthetic counts, in memory (batch key ``batch``)."""
    from geovae.datasets.simulate import simulate_counts

    return simulate_counts(n_cells=cells, n_genes=genes, seed=seed, **VS_SCVI_DATA)


class EpochClock:
    """Marks each epoch's start (end of ``before_epoch``) and end (start of the next
    ``before_epoch``, or of ``after_training``) on a module, in the training thread: wall,
    that thread's CPU and the process's CPU; and the phase each epoch trained in."""

    def __init__(self, module) -> None:
        self.module = module
        self.starts: list[tuple[float, float, float]] = []
        self.ends: list[tuple[float, float, float]] = []
        self.phases: list[str] = []
        self.hooks: list[float] = []
        before, after = module.before_epoch, module.after_training

        def before_epoch(*args, **kwargs):
            t = self.now()
            if self.starts:
                self.ends.append(t)
            out = before(*args, **kwargs)
            self.starts.append(self.now())
            self.hooks.append(self.starts[-1][0] - t[0])
            self.phases.append(str(getattr(module, "phase", "vae")))
            return out

        def after_training(*args, **kwargs):
            self.ends.append(self.now())
            return after(*args, **kwargs)

        module.before_epoch, module.after_training = before_epoch, after_training

    @staticmethod
    def now() -> tuple[float, float, float]:
        return time.perf_counter(), time.thread_time(), time.process_time()

    def detach(self) -> None:
        del self.module.before_epoch, self.module.after_training

    def epochs(self) -> list[dict]:
        return [{"phase": p, "wall_s": e[0] - s[0], "thread_cpu_s": e[1] - s[1],
                 "process_cpu_s": e[2] - s[2], "hook_s": h}
                for s, e, p, h in zip(self.starts, self.ends, self.phases, self.hooks,
                                      strict=False)]
