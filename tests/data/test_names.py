"""Every layer and obs column a run names is checked before anything is logged, with a close
match suggested (case-insensitive), and a numeric measurement is refused as labels."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from helpers import PBMC, run_cli

from geovae.data import check_names, setup_data
from geovae.errors import OptionError
from geovae.io.backed import read_backed


@pytest.fixture(scope="module")
def pbmc() -> ad.AnnData:
    a = ad.read_h5ad(PBMC)
    a.layers["counts"] = a.X.copy()
    return a


@pytest.mark.parametrize(("kwargs", "suggestion"), [
    ({"label_key": "Bulk_Labels"}, "did you mean bulk_labels?"),
    ({"label_key": "bulk_label"}, "did you mean bulk_labels?"),
    ({"batch_keys": ["Phase"]}, "did you mean phase?"),
    ({"eval_key": "LOUVAIN"}, "did you mean louvain?"),
    ({"layer": "Counts"}, "did you mean counts?"),
])
def test_wrong_names_suggest_the_close_one(pbmc: ad.AnnData, kwargs: dict,
                                           suggestion: str) -> None:
    with pytest.raises(OptionError) as info:
        check_names(pbmc, **kwargs)
    assert str(info.value).endswith(suggestion), str(info.value)
    param = next(iter(kwargs)).replace("batch_keys", "batch_key")
    assert info.value.param == param and f"`{param}`" in str(info.value)


def test_no_suggestion_when_nothing_is_close(pbmc: ad.AnnData) -> None:
    with pytest.raises(OptionError, match="not a column of obs") as info:
        check_names(pbmc, label_key="zzzz")
    assert "did you mean" not in str(info.value)


def test_numeric_measurement_refused_as_labels(pbmc: ad.AnnData) -> None:
    with pytest.raises(OptionError, match="'n_counts' is a numeric column with 626 distinct "
                                          "values, not labels") as info:
        check_names(pbmc, label_key="n_counts")
    assert "bulk_labels" in str(info.value) and "astype('category')" in str(info.value)
    with pytest.raises(OptionError, match="numeric column"):  # the library path too
        setup_data(pbmc, label_key="n_counts")
    ok = pbmc.copy()
    ok.obs["code"] = np.arange(ok.n_obs) % 7  # integer codes of a few groups are labels
    check_names(ok, label_key="code")
    ok.obs["n_counts_cat"] = ok.obs["n_counts"].astype("category")  # the user's choice
    check_names(ok, label_key="n_counts_cat")


def test_backed_layer_suggestion(tmp_path: Path) -> None:
    a = ad.AnnData(sp.csr_matrix(np.ones((20, 5), np.float32)))
    a.layers["counts"] = a.X.copy()
    a.write_h5ad(tmp_path / "a.h5ad")
    with pytest.raises(OptionError, match="did you mean counts?"):
        check_names(read_backed(tmp_path / "a.h5ad"), layer="COUNTS")


@pytest.mark.parametrize("backed", ["--no-backed", "--backed"])
def test_cli_wrong_label_key_is_the_first_and_only_line(tmp_path: Path, backed: str) -> None:
    """Today's main printed the training plan first and suggested nothing."""
    res = run_cli("fit", PBMC, "--out", tmp_path / "o.h5ad", "--epochs", "1", backed,
                  "--label-key", "Bulk_Labels")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output  # nothing logged before the error
    assert "--label-key 'Bulk_Labels' is not a column of obs" in lines[0]
    assert lines[0].endswith("did you mean bulk_labels?"), lines[0]
    assert not list(tmp_path.iterdir())


def test_cli_numeric_label_key_refused(tmp_path: Path) -> None:
    res = run_cli("fit", PBMC, "--out", tmp_path / "o.h5ad", "--epochs", "1",
                  "--label-key", "n_counts")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--label-key 'n_counts' is a numeric column" in lines[0], \
        res.output


def test_cli_wrong_layer_names_the_flag(tmp_path: Path) -> None:
    res = run_cli("fit", PBMC, "--out", tmp_path / "o.h5ad", "--layer", "count")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "omit --layer to use X" in lines[0], res.output


def test_cli_embed_and_transfer_check_names_first(tmp_path: Path) -> None:
    """embed: the model's covariate column missing from the new cells; transfer: a wrong
    --eval-key. Each is the only line (main logged the embedding/transfer plan first, and
    transfer suggested nothing)."""
    a = ad.read_h5ad(PBMC)
    a.write_h5ad(tmp_path / "in.h5ad")
    res = run_cli("fit", tmp_path / "in.h5ad", "--out", tmp_path / "f.h5ad", "--model-dir",
                  tmp_path / "m", "--batch-key", "phase", "--epochs", "1", "--no-umap",
                  "--quiet")
    assert res.exit_code == 0, res.output
    del a.obs["phase"]
    a.write_h5ad(tmp_path / "new.h5ad")
    res = run_cli("embed", tmp_path / "m", tmp_path / "new.h5ad", "--out", tmp_path / "e.h5ad")
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "'phase' is not a column of obs" in lines[0]
    res = run_cli("transfer", tmp_path / "m", tmp_path / "in.h5ad", "--out",
                  tmp_path / "t.h5ad", "--eval-key", "Bulk_labels", "--epochs", "1")
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "--eval-key 'Bulk_labels' is not a column of obs" in lines[0]
    assert lines[0].endswith("did you mean bulk_labels?")
