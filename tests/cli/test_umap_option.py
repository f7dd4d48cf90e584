"""`--umap-epochs` on `fit` and `cluster`: the default by size reaches the UMAP (the CLI passes
no number of its own), a number asked is used and recorded, a bad one is a one-line error."""

from __future__ import annotations

import importlib
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from helpers import run_cli

from geovae import _keys as K
from geovae.datasets import simulate_counts


def _umap_record(path: Path) -> tuple[int, int, float]:
    r = ad.read_h5ad(path).uns[K.UNS]["umap"]
    return r["n_epochs"], r["negative_sample_rate"], r["learning_rate"]


@pytest.fixture
def small_counts_count_as_large(monkeypatch: pytest.MonkeyPatch) -> None:
    """240 cells take the settings of more than 10,000 (a small, fast check of the default)."""
    module = importlib.import_module("geovae.tools.cluster")  # the package's `cluster` is the
    monkeypatch.setattr(module, "CHEAP_UMAP_CELLS", 100)    # function


def test_cluster_default_and_asked_epochs(tmp_path: Path,
                                          small_counts_count_as_large: None) -> None:
    rng = np.random.default_rng(0)
    a = ad.AnnData(np.zeros((240, 1), np.float32))
    a.obsm[K.REP] = (rng.normal(size=(240, 4)) + 4 * (np.arange(240) % 3)[:, None]).astype(
        np.float32)
    a.write_h5ad(tmp_path / "z.h5ad")
    res = run_cli("cluster", tmp_path / "z.h5ad", "--out", tmp_path / "d.h5ad")
    assert res.exit_code == 0, res.output
    assert _umap_record(tmp_path / "d.h5ad") == (70, 1, 1.43)
    res = run_cli("cluster", tmp_path / "z.h5ad", "--out", tmp_path / "e.h5ad",
                  "--umap-epochs", "100")
    assert res.exit_code == 0, res.output
    assert _umap_record(tmp_path / "e.h5ad") == (100, 1, 1.0)


def test_fit_default_epochs(tmp_path: Path, small_counts_count_as_large: None) -> None:
    simulate_counts(n_cells=240, n_genes=30, n_types=3, seed=0).write_h5ad(tmp_path / "c.h5ad")
    res = run_cli("fit", tmp_path / "c.h5ad", "--out", tmp_path / "f.h5ad", "--epochs", "1",
                  "--threads", "1")
    assert res.exit_code == 0, res.output
    assert _umap_record(tmp_path / "f.h5ad") == (70, 1, 1.43)


@pytest.mark.parametrize(("command", "bad"), [("cluster", "-1"), ("fit", "many")])
def test_a_bad_epoch_count_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       command: str, bad: str) -> None:
    monkeypatch.chdir(tmp_path)
    res = run_cli(command, "in.h5ad", "--out", "o.h5ad", "--umap-epochs", bad)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "Invalid value for '--umap-epochs'" in err[0], err
    assert list(tmp_path.iterdir()) == []
