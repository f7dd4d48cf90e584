"""geovae's file promises under races (issue 25): a signal during the commit, a folder that
appears at an output path while the run works, a fake model directory, glob characters in
--out next to another run's live temporaries."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli, sha256

#: imported by every Python started with its folder first on PYTHONPATH: os.replace of an
#: output (not of a temporary) in GEOVAE_TEST_DIR logs the call, then sleeps, so a test can
#: signal the run between two renames of its commit
SLOW_REPLACE = '''
import os, time
_real, _dir = os.replace, os.environ["GEOVAE_TEST_DIR"]
def _replace(src, dst, *args, **kwargs):
    _real(src, dst, *args, **kwargs)
    src = os.path.abspath(src)
    if os.path.dirname(src) == _dir and ".geovae-tmp-" not in os.path.basename(src):
        with open(os.environ["GEOVAE_TEST_LOG"], "a") as log:
            log.write(src + "\\n")
        time.sleep(float(os.environ.get("GEOVAE_TEST_SLEEP", "1")))
os.replace = _replace
'''


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): "<dir>" if p.is_dir() else sha256(p)
            for p in sorted(folder.rglob("*"))}


def _counts_csv(path: Path, n: int = 60, g: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    pd.DataFrame(rng.poisson(3.0, (n, g)), columns=[f"g{j}" for j in range(g)],
                 index=[f"c{i}" for i in range(n)]).to_csv(path)
    return path


def _geovae(tmp_path: Path, run: Path, *args: object, **env: str) -> subprocess.Popen:
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(SLOW_REPLACE)
    path = os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "GEOVAE_TEST_DIR": str(run),
           "GEOVAE_TEST_LOG": str(tmp_path / "replaced.log"), **env}
    return subprocess.Popen([sys.executable, "-m", "geovae", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("threads", ["0", "1"])
def test_sigterm_between_two_renames_of_the_commit(tmp_path: Path, threads: str) -> None:
    """SIGTERM after the old plot was moved aside, before the new one is in: the commit
    finishes (signals only set a flag while it runs), every output is the new one, rc 130."""
    run = tmp_path / "run"
    run.mkdir()
    data = _counts_csv(tmp_path / "x.csv")
    args = ["fit", data, "--out", run / "o.h5ad", "--epochs", "1", "--quiet", "--threads",
            threads]
    first = _geovae(tmp_path, tmp_path / "nowhere", *args)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    before = _files(run)
    assert {"o.h5ad", "o.umap.png", "o.model/weights.pt"} <= set(before)
    log = tmp_path / "replaced.log"
    proc = _geovae(tmp_path, run, *args, "--seed", "1")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not log.exists():
        time.sleep(0.01)
    assert log.exists(), proc.stderr.read()
    proc.send_signal(signal.SIGTERM)  # the first output was just moved aside
    code = proc.wait(timeout=120)
    err = proc.stderr.read()
    assert code == 130 and "after the outputs were written" in err, err
    after = _files(run)
    assert set(after) == set(before), "an output is missing or a temporary was left"
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {n for n in after if before[n] != "<dir>"}, "old and new outputs mixed"


def _fake_model_dir(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"format": "geovae-model/2"}))
    (path / "weights.pt").mkdir()
    (path / "weights.pt" / "notes.txt").write_text("my notes")
    return path


def test_fake_model_dir_is_not_a_model_dir(tmp_path: Path) -> None:
    """Names alone do not make a geovae model directory: weights.pt/ a folder is refused
    before any work and its contents stay."""
    data = _counts_csv(tmp_path / "x.csv")
    fake = _fake_model_dir(tmp_path / "fake")
    before = _files(tmp_path)
    res = run_cli("fit", data, "--out", tmp_path / "o.h5ad", "--model-dir", fake,
                  "--epochs", "1", "--quiet")
    assert res.exit_code == 2, res.output
    assert "not a geovae model directory" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert _files(tmp_path) == before


@pytest.mark.parametrize("target", ["model", "out"])
def test_folder_created_at_an_output_while_training_is_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """A folder that appears at --model-dir or --out while the run trains is not replaced:
    rc 2, one line, the folder and its file kept, no output and no temporary left."""
    import importlib

    fit_module = importlib.import_module("geovae.tools.fit")
    data = _counts_csv(tmp_path / "x.csv")
    out, model = tmp_path / "o.h5ad", tmp_path / "results"
    appears = model if target == "model" else out
    real_fit = fit_module.fit

    def fit_then_mkdir(*args: object, **kwargs: object) -> object:
        fitted = real_fit(*args, **kwargs)
        appears.mkdir()
        (appears / "keep.txt").write_text("the user's file")
        return fitted

    monkeypatch.setattr(fit_module, "fit", fit_then_mkdir)
    res = run_cli("fit", data, "--out", out, "--model-dir", model, "--epochs", "1", "--quiet")
    assert res.exit_code == 2, res.output
    assert str(appears) in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert (appears / "keep.txt").read_text() == "the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x.csv", appears.name])
    assert [p.name for p in appears.iterdir()] == ["keep.txt"]


def test_glob_characters_in_out_spare_another_runs_temporaries(tmp_path: Path) -> None:
    """--out '[x].h5ad' beside another (live) run's temporary of x.h5ad: the stale clean-up
    matches names literally and never deletes a live run's file."""
    data = _counts_csv(tmp_path / "x.csv")
    # a temporary of process 1 (always running); read from the wrong offset its name gives
    # the PID 999999999, which is not running
    live = tmp_path / ".x.h5ad.geovae-tmp-1-999999999-abc"
    live.write_bytes(b"another run's output in progress")
    res = run_cli("fit", data, "--out", tmp_path / "[x].h5ad", "--epochs", "1", "--quiet")
    assert res.exit_code == 0, res.output
    assert live.read_bytes() == b"another run's output in progress"
    assert (tmp_path / "[x].h5ad").is_file()


def test_stale_temporary_with_glob_characters_is_removed(tmp_path: Path) -> None:
    """A dead run's temporary of '[x].h5ad' is still found and removed."""
    from geovae.io.write import clean_stale

    stale = tmp_path / ".[x].h5ad.geovae-tmp-999999999-abc"
    stale.write_bytes(b"half")
    other = tmp_path / ".x.h5ad.geovae-tmp-999999999-abc"  # another output's: not ours
    other.write_bytes(b"half")
    clean_stale(tmp_path / "[x].h5ad")
    assert not stale.exists() and other.exists()


# ---------------------------------------------------------------- report: the same plan
def test_report_metrics_json_onto_a_folder_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    fitted = tiny_model.parent / "fit.h5ad"
    folder = tmp_path / "results.json"
    folder.mkdir()
    (folder / "keep.txt").write_text("the user's file")
    before = _files(tmp_path)
    res = run_cli("report", fitted, "--out", tmp_path / "r.html", "--metrics-json", folder)
    assert res.exit_code == 2, res.output
    assert "--metrics-json" in res.stderr and "is a folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert _files(tmp_path) == before


def test_report_takes_the_lock_and_checks_before_reading(tmp_path: Path,
                                                         tiny_model: Path) -> None:
    import fcntl

    fitted = tiny_model.parent / "fit.h5ad"
    fd = os.open(tmp_path / ".r.html.geovae-lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        res = run_cli("report", fitted, "--out", tmp_path / "r.html")
        assert res.exit_code == 2 and "another geovae run is writing" in res.stderr, res.output
    finally:
        os.close(fd)
    res = run_cli("report", fitted, "--out", tmp_path / "r.html", "--metrics-json",
                  tmp_path / "nope" / "m.json")
    assert res.exit_code == 2 and "does not exist" in res.stderr, res.output
    assert not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------- full and read-only disks
def _first_outputs(tmp_path: Path, folder: Path) -> tuple[Path, dict[str, str]]:
    data = _counts_csv(tmp_path / "x.csv", n=40)
    res = run_cli("fit", data, "--out", folder / "o.h5ad", "--epochs", "1", "--quiet")
    assert res.exit_code == 0, res.output
    return data, _files(folder)


def test_disk_full_while_writing_is_one_line(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the write itself (after the free-space check): rc 2, one line naming the
    output and the cause, earlier outputs untouched, no temporary left."""
    import errno

    import geovae.io.backed as backed

    data, before = _first_outputs(tmp_path, tmp_path)

    def full(adata: object, path: Path) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(backed, "write_any", full)
    res = run_cli("fit", data, "--out", tmp_path / "o.h5ad", "--epochs", "1", "--seed", "3",
                  "--quiet")
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "no space left on the device" in err[0], err
    assert str(tmp_path / "o.h5ad") in err[0] and "earlier outputs are untouched" in err[0]
    assert _files(tmp_path) == before


def test_too_little_free_space_is_refused_before_writing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import geovae.io.write as write

    data, before = _first_outputs(tmp_path, tmp_path)
    monkeypatch.setattr(write, "free_bytes", lambda folder: 100_000)
    res = run_cli("fit", data, "--out", tmp_path / "o.h5ad", "--epochs", "1", "--seed", "3",
                  "--quiet")
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "not enough free space in" in err[0] and "MiB free" in err[0], err
    assert _files(tmp_path) == before


@pytest.fixture
def tmpfs(tmp_path: Path) -> Path:
    """An 8 MiB tmpfs (tests run as root where mounting is allowed; skipped elsewhere)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
            capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_nearly_full_tmpfs(tmp_path: Path, tmpfs: Path) -> None:
    """A real full disk (issue 25: exit 139, a segfault after 1,552 lines of h5py errors):
    rc 2 and one line, earlier outputs intact, no temporaries."""
    data, before = _first_outputs(tmp_path, tmpfs)
    free = shutil.disk_usage(tmpfs).free
    with open(tmpfs / "filler", "wb") as fh:
        fh.write(b"\0" * (free - (64 << 10)))  # 64 KiB left: less than the outputs need
    before = _files(tmpfs)
    proc = subprocess.run([sys.executable, "-m", "geovae", "fit", str(data), "--out",
                           str(tmpfs / "o.h5ad"), "--epochs", "1", "--seed", "3", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "no space left on the device" in err[0], err
    assert _files(tmpfs) == before


def test_read_only_file_system_is_named(tmp_path: Path, tmpfs: Path) -> None:
    data, before = _first_outputs(tmp_path, tmpfs)
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)]).returncode == 0
    res = run_cli("fit", data, "--out", tmpfs / "o.h5ad", "--epochs", "1", "--quiet")
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "is on a read-only file system" in err[0], err
    assert str(tmpfs) in err[0] and _files(tmpfs) == before


def test_simulate_checks_free_space_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import geovae.io.write as write

    monkeypatch.setattr(write, "free_bytes", lambda folder: 1000)
    res = run_cli("simulate", tmp_path / "s.h5ad", "--quiet")
    assert res.exit_code == 2 and "not enough free space" in res.stderr, res.output
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- hostile model directories
def _damaged_copy(tmp_path: Path, model: Path, damage: object) -> Path:
    copy = tmp_path / "m"
    shutil.copytree(model, copy)
    damage(copy)
    return copy


def _history(value: object) -> object:
    def damage(model: Path) -> None:
        meta = json.loads((model / "config.json").read_text())
        meta["history"] = value
        (model / "config.json").write_text(json.dumps(meta))
    return damage


def _reference(**members: object) -> object:
    def damage(model: Path) -> None:
        import zipfile

        with np.load(model / "reference.npz") as data:
            arrays = {k: data[k] for k in data.files}
        raw = {k: v for k, v in members.items() if isinstance(v, bytes)}
        arrays.update({k: v(arrays) if callable(v) else v for k, v in members.items()
                       if not isinstance(v, bytes)})
        for k in raw:
            arrays.pop(k, None)
        np.savez(model / "reference.npz", **arrays)
        with zipfile.ZipFile(model / "reference.npz", "a") as z:
            for k, v in raw.items():
                z.writestr(k, v)  # a member that is not an array
    return damage


@pytest.mark.parametrize(("damage", "mention"), [
    (_history({"train": "abc", "validation": 3}), "training history in config.json"),
    (_history({"train": [1.0], "validation": [1.0], "best_epoch": 7}), "'best_epoch'"),
    (_history([1, 2]), "is a list, not a JSON object"),
    (_reference(latent=lambda a: a["latent"][:, :3]), "latent 3 columns wide, but the model's "
                                                      "latent has 10 coordinates"),
    (_reference(latent=b"not an array"), "no 2-D numeric array 'latent'"),
    (_reference(labels=lambda a: a["latent"][:, 0]), "label codes outside"),
    (_reference(umap=lambda a: a["latent"][:5]), "member 'umap' must be a numeric array of "
                                                 "shape"),
])
@pytest.mark.parametrize("command", ["embed", "transfer"])
def test_hostile_model_directory_is_one_line(tmp_path: Path, tiny_model: Path,
                                             pbmc_copy: Path, damage: object, mention: str,
                                             command: str) -> None:
    """A damaged history or reference.npz: rc 2 and one line naming the directory before any
    work (was an internal error, for transfer after training)."""
    model = _damaged_copy(tmp_path, tiny_model, damage)
    before = _files(tmp_path)
    args = ["--epochs", "1"] if command == "transfer" else []
    res = run_cli(command, model, pbmc_copy, "--out", tmp_path / "o.h5ad", "--quiet", *args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and mention in err[0] and str(model) in err[0], err
    assert _files(tmp_path) == before


def test_free_space_estimate_counts_a_backed_inputs_file() -> None:
    """A backed run's output is a copy of its input file: the estimate includes it."""
    from helpers import PBMC

    from geovae.io.backed import read_backed
    from geovae.io.write import h5ad_bytes

    assert h5ad_bytes(read_backed(PBMC)) >= PBMC.stat().st_size


def test_an_output_moved_aside_by_a_killed_commit_goes_back(tmp_path: Path) -> None:
    """A run killed (SIGKILL) between moving the old output aside and moving the new one in
    leaves the user's earlier output inside its temporary folder: the next run's clean-up
    puts it back instead of deleting it; a leftover backup never replaces a present file."""
    from geovae.io.write import clean_stale

    final = tmp_path / "o.h5ad"
    stale = tmp_path / ".o.h5ad.geovae-tmp-999999999-abc"  # PID 999999999 is not running
    stale.mkdir()
    (stale / "old").write_bytes(b"the user's earlier output")
    clean_stale(final)
    assert final.read_bytes() == b"the user's earlier output" and not stale.exists()
    stale.mkdir()
    (stale / "old").write_bytes(b"older")
    clean_stale(final)  # final is there (a later run finished): the leftover goes
    assert final.read_bytes() == b"the user's earlier output" and not stale.exists()
