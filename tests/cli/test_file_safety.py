"""geovae's promises about files (issue: never lose, overwrite or half-write a user's file):
never overwrite the input, never delete what it did not write, all outputs of a run or none,
outputs checked before any work, permissions from the umask, one line for inputs we can name."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers import PBMC, run_cli, sha256


def _files(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (relative path -> hash); folders as '<dir>'."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = "<dir>" if p.is_dir() else sha256(p)
    return out


def _fails_cleanly(res, folder: Path, before: dict[str, str], mention: str) -> None:
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert "Traceback" not in res.output and len(err.splitlines()) == 1, err
    assert mention.lower() in err.lower(), err
    assert _files(folder) == before, "a file was added, changed or deleted"


def _counts_csv(path: Path, n: int = 40, g: int = 8, seed: int = 0, **extra: object) -> Path:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.poisson(3.0, (n, g)), columns=[f"g{j}" for j in range(g)],
                      index=[f"c{i}" for i in range(n)])
    for k, v in extra.items():
        df[k] = v
    df.to_csv(path)  # pandas' default: an unnamed first column of row names
    return path


# ---------------------------------------------------------------- data loss
def test_model_dir_that_is_a_user_folder_is_refused(tmp_path: Path) -> None:
    mydata = tmp_path / "mydata"
    mydata.mkdir()
    shutil.copy(PBMC, mydata / "good.h5ad")
    (mydata / "notes.txt").write_text("my notes")
    before = _files(tmp_path)
    res = run_cli("fit", mydata / "good.h5ad", "--out", tmp_path / "o.h5ad", "--model-dir",
                  mydata, "--epochs", "1", "--quiet")
    _fails_cleanly(res, tmp_path, before, "holds an input")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    before = _files(tmp_path)
    res = run_cli("fit", mydata / "good.h5ad", "--out", tmp_path / "o.h5ad", "--model-dir",
                  other, "--epochs", "1", "--quiet")
    _fails_cleanly(res, tmp_path, before, "not a geovae model directory")


@pytest.mark.parametrize("command", ["fit", "cluster"])
def test_plot_onto_the_input_is_refused(tmp_path: Path, pbmc_copy: Path, command: str) -> None:
    before = _files(tmp_path)
    args = ["--epochs", "1"] if command == "fit" else []
    res = run_cli(command, pbmc_copy, "--out", tmp_path / "o.h5ad", "--plot", pbmc_copy,
                  "--quiet", *args)
    _fails_cleanly(res, tmp_path, before, "never overwrites its input")


def test_model_dir_dot_is_refused(tmp_path: Path, pbmc_copy: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    res = run_cli("fit", "pbmc.h5ad", "--out", "o.h5ad", "--model-dir", ".", "--quiet")
    _fails_cleanly(res, tmp_path, before, "holds an input")


def test_outputs_that_collide_are_refused(tmp_path: Path, pbmc_copy: Path) -> None:
    before = _files(tmp_path)
    res = run_cli("fit", pbmc_copy, "--out", tmp_path / "o.h5ad", "--plot",
                  tmp_path / "o.h5ad.png", "--model-dir", tmp_path / "o.h5ad.png", "--quiet")
    _fails_cleanly(res, tmp_path, before, "same path")


# ---------------------------------------------------------------- checked before any work
@pytest.mark.parametrize(("option", "value", "mention"), [
    ("--model-dir", "nope/m", "does not exist"),
    ("--model-dir", "afile", "not a folder"),
    ("--plot", "nope/p.png", "does not exist"),
    ("--plot", "p.jpg", "must end in .png, .pdf, .svg"),
])
def test_output_locations_checked_before_reading(tmp_path: Path, option: str, value: str,
                                                 mention: str) -> None:
    broken = tmp_path / "broken.h5ad"  # unreadable: the output check must come first
    broken.write_text("not hdf5")
    (tmp_path / "afile").write_text("x")
    before = _files(tmp_path)
    res = run_cli("fit", broken, "--out", tmp_path / "o.h5ad", option, tmp_path / value)
    _fails_cleanly(res, tmp_path, before, mention)


def test_unwritable_folder_refused_before_reading(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.h5ad"
    broken.write_text("not hdf5")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked
                        else real_access(p, mode))  # tests run as root, who may write anywhere
    before = _files(tmp_path)
    res = run_cli("fit", broken, "--out", locked / "o.h5ad")
    _fails_cleanly(res, tmp_path, before, "is not writable")


# ---------------------------------------------------------------- formats and permissions
def test_plot_format_follows_suffix_and_outputs_follow_umask(tmp_path: Path) -> None:
    data = _counts_csv(tmp_path / "x.csv")
    old = os.umask(0o022)
    try:
        res = run_cli("fit", data, "--out", tmp_path / "o.h5ad", "--plot", tmp_path / "o.pdf",
                      "--epochs", "1", "--quiet")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o.pdf").read_bytes()[:4] == b"%PDF"
    assert (tmp_path / "o.h5ad").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "o.pdf").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "o.model").stat().st_mode & 0o777 == 0o755
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- inputs we can name
def test_too_few_cells(tmp_path: Path) -> None:
    data = _counts_csv(tmp_path / "x.csv", n=3)
    before = _files(tmp_path)
    res = run_cli("fit", data, "--out", tmp_path / "o.h5ad", "--quiet")
    _fails_cleanly(res, tmp_path, before, "need at least 10 cells")


def test_all_zero_matrix(tmp_path: Path) -> None:
    a = ad.AnnData(np.zeros((30, 5), dtype=np.float32))
    a.write_h5ad(tmp_path / "z.h5ad")
    before = _files(tmp_path)
    res = run_cli("fit", tmp_path / "z.h5ad", "--out", tmp_path / "o.h5ad", "--quiet")
    _fails_cleanly(res, tmp_path, before, "every value of the data is zero")


@pytest.mark.parametrize(("damage", "mention"), [
    (lambda m: m["config"].update(latent="torus"), "config.json: unknown `latent` 'torus'"),
    (lambda m: m["config"].pop("n_hidden"), "missing model setting(s) ['n_hidden']"),
    (lambda m: m.update(format="geovae-model/99"), "has format 'geovae-model/99'"),
    # sizes are bounded before anything is allocated (issue 25: n_layers 10^6 ran 135 s)
    (lambda m: m["config"].update(n_layers=10 ** 6), "config.json: `n_layers` must be a "
                                                     "whole number between 1 and 64"),
    (lambda m: m["config"].update(n_hidden=10 ** 9), "between 1 and 16384"),
    (lambda m: m["config"].update(latent_dim=10 ** 9), "between 1 and 1024"),
    (lambda m: m["config"].update(n_layers=64, n_hidden=16384), "more than the limit"),
    (lambda m: m["config"].update(dropout="lots"), "must be in [0, 1)"),
])
def test_damaged_model_dir_is_named(tmp_path: Path, tiny_model: Path, pbmc_copy: Path,
                                    damage: object, mention: str) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    meta = json.loads((model / "config.json").read_text())
    damage(meta)
    (model / "config.json").write_text(json.dumps(meta))
    before = _files(tmp_path)
    res = run_cli("embed", model, pbmc_copy, "--out", tmp_path / "e.h5ad", "--quiet")
    _fails_cleanly(res, tmp_path, before, mention)
    assert str(model) in res.stderr and "written by geovae" in res.stderr


# ---------------------------------------------------------------- tables
def test_separator_not_matching_extension_is_sniffed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.poisson(3.0, (30, 6)), columns=[f"g{j}" for j in range(6)])
    df.to_csv(tmp_path / "semi.csv", sep=";", index=False)
    res = run_cli("fit", tmp_path / "semi.csv", "--out", tmp_path / "o.h5ad", "--epochs", "1",
                  "--quiet")
    assert res.exit_code == 0, res.output
    assert "separated by semicolons" in res.stderr
    assert ad.read_h5ad(tmp_path / "o.h5ad").n_vars == 6


def test_numeric_metadata_columns_and_pandas_index(tmp_path: Path) -> None:
    n = 40
    data = _counts_csv(tmp_path / "x.csv", n=n, batch=np.arange(n) % 2,
                       age=np.linspace(20, 60, n))
    res = run_cli("fit", data, "--out", tmp_path / "o.h5ad", "--batch-key", "batch",
                  "--obs-columns", "age", "--epochs", "1", "--quiet")
    assert res.exit_code == 0, res.output
    out = ad.read_h5ad(tmp_path / "o.h5ad")
    assert list(out.var_names) == [f"g{j}" for j in range(8)]  # no "Unnamed: 0", batch, age
    assert list(out.obs_names[:2]) == ["c0", "c1"]
    assert {"batch", "age"} <= set(out.obs.columns)


def test_batch_categories_match_across_number_formats(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    X = rng.poisson(3.0, (40, 8)).astype(np.float32)
    fit_in = ad.AnnData(X, obs=pd.DataFrame({"batch": np.arange(40) % 2 * 1.0},
                                            index=[f"c{i}" for i in range(40)]))
    fit_in.var_names = [f"g{j}" for j in range(8)]
    fit_in.write_h5ad(tmp_path / "f.h5ad")
    emb = fit_in.copy()
    emb.obs["batch"] = (np.arange(40) % 2).astype(int)
    emb.write_h5ad(tmp_path / "e.h5ad")
    assert run_cli("fit", tmp_path / "f.h5ad", "--out", tmp_path / "fo.h5ad", "--batch-key",
                   "batch", "--epochs", "1", "--quiet").exit_code == 0
    res = run_cli("embed", tmp_path / "fo.model", tmp_path / "e.h5ad", "--out",
                  tmp_path / "eo.h5ad", "--quiet")
    assert res.exit_code == 0, res.output


def test_duplicated_cell_names_made_unique(tmp_path: Path) -> None:
    a = ad.AnnData(np.random.default_rng(3).poisson(3.0, (30, 6)).astype(np.float32))
    a.obs_names = ["same"] * 30
    a.var_names = [f"g{j}" for j in range(6)]
    a.write_h5ad(tmp_path / "d.h5ad")
    res = run_cli("fit", tmp_path / "d.h5ad", "--out", tmp_path / "o.h5ad", "--epochs", "1",
                  "--n-top-genes", "10")
    assert res.exit_code == 0, res.output
    assert "duplicated cell names" in res.stderr
    assert "n_top_genes=10 >= the 6 features" in res.stderr
    assert ad.read_h5ad(tmp_path / "o.h5ad").obs_names.is_unique


# ---------------------------------------------------------------- concurrent and killed runs
def test_second_run_on_the_same_out_is_refused(tmp_path: Path, pbmc_copy: Path) -> None:
    import fcntl

    lock = tmp_path / ".o.h5ad.geovae-lock"
    fd = os.open(lock, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        before = _files(tmp_path)
        res = run_cli("fit", pbmc_copy, "--out", tmp_path / "o.h5ad", "--quiet")
        assert res.exit_code == 2 and "another geovae run is writing" in res.stderr
        assert _files(tmp_path) == before
    finally:
        os.close(fd)


def _geovae(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "geovae", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_writing_leaves_old_outputs(tmp_path: Path, sig: int) -> None:
    """A signal the moment a temporary output appears: the old outputs stay, nothing else."""
    data = _counts_csv(tmp_path / "x.csv", n=60)
    first = _geovae("fit", data, "--out", tmp_path / "o.h5ad", "--epochs", "1", "--quiet")
    assert first.wait(timeout=300) == 0, first.stderr.read()
    before = _files(tmp_path)
    proc = _geovae("fit", data, "--out", tmp_path / "o.h5ad", "--epochs", "3", "--seed", "1",
                   "--quiet")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(".geovae-tmp-" in p.name for p in tmp_path.iterdir()):
            proc.send_signal(sig)
            break
        time.sleep(0.002)
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert "Traceback" not in err, err
    after = _files(tmp_path)
    if code == 0 or "after the outputs were written" in err:  # the signal came during the
        assert code in (0, 130), err  # commit, which finishes first: all new outputs
        assert set(after) == set(before) and after != before
    else:
        assert code == 130, err
        assert after == before, "old outputs changed or temporaries left"


@pytest.mark.slow
def test_ctrl_c_during_imports_is_one_line(tmp_path: Path, pbmc_copy: Path) -> None:
    proc = _geovae("fit", pbmc_copy, "--out", tmp_path / "o.h5ad", "--quiet")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert code == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.h5ad").exists()


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    data = _counts_csv(tmp_path / "x.csv")
    stale = tmp_path / ".o.h5ad.geovae-tmp-999999999-abc"  # a pid that cannot be running
    stale.write_bytes(b"half")
    res = run_cli("fit", data, "--out", tmp_path / "o.h5ad", "--epochs", "1", "--quiet")
    assert res.exit_code == 0, res.output
    assert not stale.exists()


def test_empty_cells_and_features_are_reported(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    X = rng.poisson(3.0, (30, 6)).astype(np.float32)
    X[3] = 0  # a cell with no counts
    X[:, 2] = 0  # a feature never seen
    a = ad.AnnData(X)
    a.obs_names = [f"c{i}" for i in range(30)]
    a.var_names = [f"g{j}" for j in range(6)]
    a.write_h5ad(tmp_path / "e.h5ad")
    res = run_cli("fit", tmp_path / "e.h5ad", "--out", tmp_path / "o.h5ad", "--epochs", "1")
    assert res.exit_code == 0, res.output
    assert "1 cells have no non-zero value (kept)" in res.stderr
    assert "1 features are zero in every cell (kept)" in res.stderr
