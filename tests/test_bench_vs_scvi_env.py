"""benchmarks/bench_vs_scvi.py runs scvi-tools with its own OpenMP wait policy, whatever this
process's environment holds: importing geovae (as making the data does) sets
OMP_WAIT_POLICY=PASSIVE in os.environ, and the scVI child used to inherit it or not depending
on whether the data file already existed."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_vs_scvi.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_vs_scvi", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("threads", [0, 1])
def test_scvi_child_gets_its_own_wait_policy(monkeypatch: pytest.MonkeyPatch,
                                             threads: int) -> None:
    bench = load_bench()
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what `import geovae` leaves behind
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    args = argparse.Namespace(threads=threads, defaults=True)
    env = bench.scvi_env(args)
    assert "OMP_WAIT_POLICY" not in env
    assert "PYTHONPATH" not in env
    assert env["BENCH_DEFAULTS"] == "1" and env["BENCH_THREADS"] == str(threads)
