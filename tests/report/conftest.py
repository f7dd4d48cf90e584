"""Outputs the report tests read: one short c*GMΔVAE fit with labels on the bundled PBMC
counts (sphere latent, volume element) and a transfer of those cells onto it."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import PBMC, run_cli


@pytest.fixture(scope="session")
def cg_fit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``geovae fit --model cgmvae --label-key bulk_labels --latent sphere --volume``: 5 epochs
    (3 left one mixture cluster once the 5% test split was held out; the marker-gene tests
    need two)."""
    d = tmp_path_factory.mktemp("report_fit")
    res = run_cli("fit", PBMC, "--out", d / "fit.h5ad", "--model", "cgmvae", "--label-key",
                  "bulk_labels", "--latent", "sphere", "--latent-dim", "2", "--epochs", "5",
                  "--volume", "--threads", "1", "--quiet")
    assert res.exit_code == 0, res.output
    return d / "fit.h5ad"


@pytest.fixture(scope="session")
def transferred(cg_fit: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``geovae transfer`` of the PBMC cells onto the fit, with --reference (so the joint
    object OUT_STEM.joint.h5ad is written beside the query output) and --eval-key."""
    d = tmp_path_factory.mktemp("report_transfer")
    res = run_cli("transfer", cg_fit.with_name("fit.model"), PBMC, "--out", d / "q.h5ad",
                  "--reference", cg_fit, "--eval-key", "bulk_labels", "--epochs", "1",
                  "--threads", "1", "--quiet")
    assert res.exit_code == 0, res.output
    return d / "q.h5ad"
