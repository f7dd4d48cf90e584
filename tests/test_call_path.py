"""Following ``geovae fit`` and ``geovae transfer`` from the CLI to the training loop: at the
first loss of the training loop the call stack runs down the layers in order (cli -> runs ->
tools -> models -> training -> modules), each layer once. The tracer is
benchmarks/trace_fit_path.py's, which also counts the modules a reader opens."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "trace_fit_path.py"


@pytest.fixture(scope="module")
def tracer():
    spec = importlib.util.spec_from_file_location("trace_fit_path", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def traces(tracer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from geovae.datasets import simulate_counts

    tmp = tmp_path_factory.mktemp("trace")
    simulate_counts(n_cells=200, n_genes=60, seed=0).write_h5ad(tmp / "tiny.h5ad")
    return tracer.traced_commands(str(tmp), data=tmp / "tiny.h5ad",
                                  conditions=(tmp / "tiny.h5ad", "condition"), fast=True)


@pytest.mark.parametrize("command", ["fit", "transfer"])
def test_stack_descends_the_layers_once(tracer, traces: dict, command: str) -> None:
    found = traces[command]
    assert found.exit_code == 0
    assert tracer.stack_layers(found.stack) == ["cli", "runs", "tools", "models", "training",
                                                "modules"], found.stack
    assert tracer.stack_problems(found.stack) == []
    assert not found.upward, found.upward


def test_the_check_sees_a_call_back_up(tracer) -> None:
    """A tools function calling back into runs, and a stack that never reaches a module's
    loss, are reported."""
    stack = ["geovae.cli:fit", "geovae.runs.jobs:run_fit", "geovae.tools.fit:fit",
             "geovae.runs.plan:call", "geovae.models.base:train",
             "geovae.training.trainer:fit", "geovae.modules.vae:loss"]
    problems = tracer.stack_problems(stack)
    assert "tools -> runs does not descend" in problems
    assert "layers entered twice: runs" in problems
    assert tracer.stack_problems(stack[:4]) != []
    assert tracer.stack_problems([]) == ["no loss was evaluated"]
