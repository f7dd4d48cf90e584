"""`import geovae` makes torch's OpenMP threads sleep when idle (OMP_WAIT_POLICY=PASSIVE,
set before torch loads its OpenMP runtime) and warns when torch came first; the verbs that
train size torch's threads like the command line's --threads and restore them afterwards.

The OpenMP runtime itself is asked what it read (``OMP_DISPLAY_ENV``: libgomp prints its
settings when it loads; PASSIVE means no spinning, ``GOMP_SPINCOUNT = '0'``)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import geovae
from geovae import _threads
from geovae.datasets import make_blobs
from geovae.errors import OptionError

SRC = str(Path(geovae.__file__).resolve().parents[1])


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "PYTHONWARNINGS")}
    environ.update(PYTHONPATH=SRC, OMP_DISPLAY_ENV="VERBOSE", **env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=300)


def _spin_count(stderr: str) -> str:
    for line in stderr.splitlines():
        if "GOMP_SPINCOUNT" in line:
            return line.split("=", 1)[1].strip().strip("'")
    pytest.skip("torch's OpenMP runtime is not libgomp (no OMP_DISPLAY_ENV report)")


def test_import_geovae_first_makes_openmp_threads_passive() -> None:
    res = _python("import os, warnings; warnings.simplefilter('error')\n"
                  "import geovae\nimport torch\n"
                  "print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads())")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "PASSIVE"
    assert _spin_count(res.stderr) == "0"  # the runtime read PASSIVE: threads never spin
    assert "torch was imported before geovae" not in res.stderr


def test_torch_first_warns_and_says_what_to_do() -> None:
    res = _python("import torch\nimport geovae\nimport os\n"
                  "print(os.environ['OMP_WAIT_POLICY'])")
    assert res.returncode == 0, res.stderr
    assert _spin_count(res.stderr) != "0"  # too late for this process: it spins
    assert "RuntimeWarning: torch was imported before geovae" in res.stderr
    assert "import geovae before torch" in res.stderr and "OMP_WAIT_POLICY=PASSIVE" in res.stderr
    assert res.stdout.split()[0] == "PASSIVE"  # processes started from here get it


def test_a_policy_the_user_chose_is_kept_without_warning() -> None:
    res = _python("import torch\nimport geovae\nimport os\nprint(os.environ['OMP_WAIT_POLICY'])",
                  OMP_WAIT_POLICY="ACTIVE")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "ACTIVE" and "Warning" not in res.stderr


def test_default_threads_follow_omp_num_threads_else_the_cpus_capped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _threads.resolve(0) == _threads.resolve(None) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    expected = min(_threads.available_cpus(), _threads.SMALL_MODEL_CAP)
    assert _threads.resolve(0) == expected
    assert _threads.resolve(5) == 5
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(OptionError, match="`threads` must be 0"):
            _threads.resolve(bad)


def _threads_seen_by_train(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The torch thread count at each `GeoVAE.train` call from now on (a spy)."""
    import torch

    from geovae.models import GeoVAE

    seen: list[int] = []
    train = GeoVAE.train

    def spy(self: GeoVAE, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return train(self, **kwargs)

    monkeypatch.setattr(GeoVAE, "train", spy)
    return seen


def test_fit_and_embed_train_with_the_threads_asked_and_restore_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from geovae.models import GeoVAE

    seen = _threads_seen_by_train(monkeypatch)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(1)
    adata = make_blobs(n_cells=200, n_features=8, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, likelihood="gaussian", epochs=1, progress=False,
                               threads=2, heldout_samples=0)
        assert torch.get_num_threads() == 1  # restored
        geovae.fit(adata, likelihood="gaussian", epochs=1, progress=False,
                       heldout_samples=0)
    assert seen == [2, _threads.resolve(0)]
    inside: list[int] = []
    write = GeoVAE.write_outputs
    monkeypatch.setattr(GeoVAE, "write_outputs", lambda self, *a: (
        inside.append(torch.get_num_threads()), write(self, *a))[1])
    geovae.embed(adata.copy(), model, threads=3)
    assert inside == [3] and torch.get_num_threads() == 1
    with pytest.raises(OptionError, match="`threads`"):
        geovae.transfer(adata.copy(), model, threads=-2)


def test_compare_latents_accepts_fits_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch


    seen = _threads_seen_by_train(monkeypatch)
    torch.set_num_threads(1)
    adata = make_blobs(n_cells=150, n_features=6, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = geovae.compare_latents(adata, latents=("euclidean",), seeds=(0,), n_samples=2,
                                       likelihood="gaussian", epochs=1, threads=2)
    assert seen == [2] and torch.get_num_threads() == 1 and len(table) == 1
