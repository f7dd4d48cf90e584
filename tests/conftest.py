"""Shared fixtures: float64 maths, a copy of the PBMC data, one small trained model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `import geovae` does, before torch

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import PBMC, run_cli  # noqa: E402

torch.set_num_threads(1)  # tiny models: threads only add contention on shared CI cores


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Each test starts with the thread count above: an in-process CLI run sets torch's
    (`--threads`), and a later test that compares two trainings must not inherit it."""
    yield
    torch.set_num_threads(1)


@pytest.fixture
def float64():
    """Run a test with float64 as torch's default dtype (maths tests), then restore it."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def pbmc_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "pbmc.h5ad"
    shutil.copy(PBMC, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained for a few epochs on the bundled PBMC counts (for embed tests)."""
    d = tmp_path_factory.mktemp("tiny")
    res = run_cli("fit", PBMC, "--out", d / "fit.h5ad", "--model-dir", d / "model",
                  "--epochs", "3", "--quiet")
    assert res.exit_code == 0, res.output
    return d / "model"
