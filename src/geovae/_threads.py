"""How many CPU threads torch should use by default (``--threads 0``).

torch's own default is every core the machine has (its OpenMP runtime reads the core count
when torch loads). On a node shared with other jobs that oversubscribes the cores, and an
OpenMP team whose threads spin while they wait for each other collapses: 20 epochs took 3 s
with one thread and 110 s with torch's default while another process shared the cores. So
the default here is the smallest of

- ``OMP_NUM_THREADS`` when the user set it (their choice, used as is);
- the CPUs this process may run on (``os.sched_getaffinity``: taskset, cpusets, Slurm);
- the cgroup's CPU quota (``cpu.max``, or ``cpu.cfs_quota_us`` on cgroup v1: Docker
  ``--cpus``, Kubernetes limits), rounded down;
- `SMALL_MODEL_CAP`: geovae's networks are small (n_hidden 128, minibatches of 128 cells),
  and more threads than this buy little (benchmarks/RESULTS.md, "Threads on a shared node").

Idle OpenMP threads sleep instead of spinning when ``OMP_WAIT_POLICY=PASSIVE``, which
``import geovae`` sets (`set_wait_policy`) unless the user chose a policy; the OpenMP runtime
reads it once, when torch loads, so it warns when torch was imported first. The verbs that
train apply the thread count for the length of the call (`using`, their ``threads=``).
Nothing here imports torch at module level.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

#: most threads the default uses for geovae's small MLPs (see the module docstring)
SMALL_MODEL_CAP = 4

F = TypeVar("F", bound=Callable[..., Any])

CGROUP_ROOT = Path("/sys/fs/cgroup")


def omp_num_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a positive number (first level of a nested list), else None."""
    raw = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        n = int(raw)
    except ValueError:
        return None
    return n if n >= 1 else None


def affinity_cpus() -> int:
    """CPUs this process may be scheduled on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _quota(quota: float, period: float) -> int | None:
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.floor(quota / period))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_dirs(root: Path, controller: str | None) -> list[Path]:
    """This process's cgroup folder and its parents, deepest first (v2: controller None)."""
    rel = None
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if (controller is None and parts[0] == "0") or \
                (controller is not None and controller in parts[1].split(",")):
            rel = parts[2]
            break
    base = root if controller is None else root / controller
    dirs = []
    if rel and rel != "/":
        p = base / rel.lstrip("/")
        while p != base and base in p.parents:
            dirs.append(p)
            p = p.parent
    dirs.append(base)
    return dirs


def cgroup_cpus(root: Path = CGROUP_ROOT) -> int | None:
    """Whole CPUs the cgroup CPU quota allows (the tightest on the way to the root), or None
    when there is no quota. cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"), else v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: none)."""
    limits = []
    for d in _own_dirs(root, None):
        text = _read(d / "cpu.max")
        if text:
            fields = text.split()
            if len(fields) == 2 and fields[0] != "max":
                try:
                    limits.append(_quota(float(fields[0]), float(fields[1])))
                except ValueError:
                    pass
    for controller in ("cpu", "cpu,cpuacct"):
        for d in _own_dirs(root, controller):
            q, p = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
            if q and p:
                try:
                    limits.append(_quota(float(q), float(p)))
                except ValueError:
                    pass
    limits = [n for n in limits if n is not None]
    return min(limits) if limits else None


def available_cpus() -> int:
    """CPUs this process may use: its affinity, within the cgroup quota."""
    n = affinity_cpus()
    quota = cgroup_cpus()
    return min(n, quota) if quota is not None else n


def default_threads() -> int:
    """torch threads for ``--threads 0``: ``OMP_NUM_THREADS`` when set, else the available
    CPUs capped at `SMALL_MODEL_CAP`."""
    env = omp_num_threads()
    if env is not None:
        return env
    return max(1, min(available_cpus(), SMALL_MODEL_CAP))


def describe() -> str:
    """One line: the default and where it comes from (for benchmarks and debugging)."""
    quota = cgroup_cpus()
    return (f"default {default_threads()} thread(s): OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, affinity {affinity_cpus()} CPU(s), "
            f"cgroup quota {quota if quota is not None else 'none'}, cap {SMALL_MODEL_CAP}; "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")


TORCH_FIRST = ("torch was imported before geovae, so its OpenMP threads spin while they wait "
               "(the default wait policy), which slows training many times over on a machine "
               "shared with other jobs: import geovae before torch, or set "
               "OMP_WAIT_POLICY=PASSIVE before Python starts")


def set_wait_policy() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; a warning when torch (and
    its OpenMP runtime, which reads the policy once when it loads) came first."""
    if "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # also for processes started from here
    if "torch" in sys.modules:
        warnings.warn(TORCH_FIRST, RuntimeWarning, stacklevel=3)


def resolve(threads: int | None) -> int:
    """The thread count ``threads`` asks for: a positive number as is, 0 or None
    `default_threads`; anything else is an `OptionError` (``--threads`` on the CLI)."""
    from geovae.errors import OptionError

    if threads is None or (not isinstance(threads, bool) and threads == 0):
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise OptionError(f"{{opt}} must be 0 (the default) or a positive number, got "
                          f"{threads!r}", param="threads")
    return threads


@contextlib.contextmanager
def using(threads: int | None) -> Iterator[int]:
    """torch's thread count set to ``resolve(threads)`` inside the block, the earlier count
    restored after it (the training's OpenMP team is sized before its first step)."""
    n = resolve(threads)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def threaded(fn: F) -> F:
    """Run ``fn`` `using` its keyword-only ``threads`` argument (default: its default)."""
    default = inspect.signature(fn).parameters["threads"].default

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with using(kwargs.get("threads", default)):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
