"""``--leiden-merge`` on the commands that cluster (the reviewer's F9: only Python's
``cluster(merge=None)`` turned the merge of Leiden clusters off): a threshold or ``off``,
recorded in ``uns['geovae']['cluster']['merge']``; a bad value is one line, before any work."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from helpers import PBMC, run_cli
from sklearn.datasets import make_blobs

from geovae.graph.merge import DEFAULT_MERGE, MERGE_CONNECTIVITY


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three separated 6-D blobs as an embedding: Leiden at resolution 1 cuts them into 8-9
    clusters whose pieces have PAGA connectivity 0.94-1 (tests/tools/test_merge.py)."""
    X, y = make_blobs(n_samples=1500, centers=3, n_features=6, center_box=(-20, 20),
                      random_state=0)
    a = ad.AnnData(np.zeros((len(X), 1), np.float32))
    a.obsm["X_geovae"] = X.astype(np.float32)
    a.obs["blob"] = y.astype(str)
    path = tmp_path_factory.mktemp("blobs") / "blobs.h5ad"
    a.write_h5ad(path)
    return path


def _cluster(src: Path, out: Path, *merge: str) -> ad.AnnData:
    res = run_cli("cluster", src, "--out", out, "--no-umap", "--quiet", *merge)
    assert res.exit_code == 0, res.output
    return ad.read_h5ad(out)


def test_cluster_merge_flag_sets_and_records_the_threshold(blobs: Path, tmp_path: Path) -> None:
    default = _cluster(blobs, tmp_path / "d.h5ad")
    rec = default.uns["geovae"]["cluster"]["merge"]
    assert rec["rule"] == DEFAULT_MERGE == "gap" and rec["threshold"] == MERGE_CONNECTIVITY
    assert default.obs["geovae_cluster"].nunique() == 3 < rec["n_before"]
    off = _cluster(blobs, tmp_path / "o.h5ad", "--leiden-merge", "off")
    assert dict(off.uns["geovae"]["cluster"]["merge"]) == {"rule": "off"}
    assert off.obs["geovae_cluster"].nunique() == rec["n_before"]  # Leiden's, unmerged
    one = _cluster(blobs, tmp_path / "1.h5ad", "--leiden-merge", "1")  # capped at 1: nothing merges
    assert dict(one.uns["geovae"]["cluster"]["merge"])["threshold"] == 1.0
    assert one.uns["geovae"]["cluster"]["merge"]["rule"] == "threshold"
    assert one.obs["geovae_cluster"].nunique() == rec["n_before"]
    low = _cluster(blobs, tmp_path / "l.h5ad", "--leiden-merge=0.5")
    assert low.uns["geovae"]["cluster"]["merge"]["threshold"] == 0.5
    assert low.obs["geovae_cluster"].nunique() == 3
    gap = _cluster(blobs, tmp_path / "g.h5ad", "--leiden-merge", "Gap")
    assert gap.uns["geovae"]["cluster"]["merge"]["rule"] == "gap"
    assert gap.obs["geovae_cluster"].nunique() == 3


def test_fit_merge_off_reaches_the_clusters(tmp_path: Path) -> None:
    res = run_cli("fit", PBMC, "--out", tmp_path / "f.h5ad", "--epochs", "2", "--no-umap",
                  "--heldout-samples", "0", "--leiden-merge", "OFF", "--quiet")
    assert res.exit_code == 0, res.output
    info = ad.read_h5ad(tmp_path / "f.h5ad").uns["geovae"]
    assert dict(info["cluster"]["merge"]) == {"rule": "off"}
    assert "merge" not in info["params"]  # a run flag, not a model option


def test_help_shows_the_default_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    for command in ("fit", "embed", "transfer", "cluster"):
        res = run_cli(command, "--help")
        assert res.exit_code == 0, res.output
        lines = res.output.splitlines()
        at = next(i for i, x in enumerate(lines) if "--leiden-merge" in x)
        row = " ".join(" ".join(x.strip("│| ").split()) for x in lines[at:at + 3])
        assert "<float|gap|off>" in row and f"Default: {DEFAULT_MERGE}." in row, row


@pytest.mark.parametrize("bad", ["-0.1", "nan", "1.5", "often", "inf"])
@pytest.mark.parametrize("command", [["cluster", "x.h5ad", "--out", "o.h5ad"],
                                     ["fit", "x.h5ad"]])
def test_a_bad_merge_value_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       bad: str, command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the input need not exist: the value is checked first
    res = run_cli(*command, "--leiden-merge", bad)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert re.search(r"error: --leiden-merge must be a PAGA connectivity between 0 and 1, gap "
                     rf"or off \(no merging\), got '{re.escape(bad)}'$", err[0]), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "why"), [
    (["--resolution", "auto", "--leiden-merge", "0.5"], "chosen from the data"),
    (["--method", "mixture", "--leiden-merge", "gap"], "the mixture's components"),
    (["--resolution", "auto"], None),  # the default merge: nothing was asked
    (["--resolution", "auto", "--leiden-merge", "off"], None),  # not merging was asked
])
def test_a_merge_that_cannot_apply_says_so(blobs: Path, tmp_path: Path, args: list[str],
                                           why: str | None) -> None:
    """--leiden-merge given where no Leiden clusters at a given resolution are cut (a chosen
    resolution, a mixture's components) is a warning line, not silently dropped."""
    a = ad.read_h5ad(blobs)
    a.obsm["geovae_cluster_probs"] = np.eye(3, dtype=np.float32)[a.obs["blob"].astype(int)]
    src = tmp_path / "probs.h5ad"
    a.write_h5ad(src)
    res = run_cli("cluster", src, "--out", tmp_path / "c.h5ad", "--no-umap", *args)
    assert res.exit_code == 0, res.output
    lines = [x for x in res.stderr.splitlines() if "had no effect" in x]
    if why is None:
        assert lines == [], lines
    else:
        assert len(lines) == 1 and why in lines[0], res.stderr
        assert f"--leiden-merge {args[-1]} had no effect" in lines[0], lines[0]
        assert "merge" not in ad.read_h5ad(tmp_path / "c.h5ad").uns["geovae"]["cluster"]
