"""The UMAP's optimisation epochs: geovae's default by size, umap-learn's with 0, N asked,
recorded, checked."""

from __future__ import annotations

import importlib

import anndata as ad
import numpy as np
import pytest

from geovae import _keys as K
from geovae.errors import OptionError
from geovae.tools.cluster import (
    CHEAP_UMAP_CELLS,
    LARGE_UMAP_EPOCHS,
    LARGE_UMAP_LEARNING_RATE,
    UMAP_EPOCHS,
    UMAP_LEARN_NEGATIVE_SAMPLES,
    UMAP_NEGATIVE_SAMPLES,
    cluster,
    umap_learn_epochs,
)


class _Seen(list):
    starts: list


@pytest.fixture
def epochs_run(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The (``n_epochs``, negative samples, initial learning rate) umap-learn's optimiser is
    called with (scanpy imports it per call)."""
    import umap.umap_ as U

    real, seen = U.simplicial_set_embedding, _Seen()

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append((kwargs["n_epochs"], kwargs["negative_sample_rate"],
                     kwargs["initial_alpha"]))
        starts.append(kwargs["init"])
        return real(*args, **kwargs)

    monkeypatch.setattr(U, "simplicial_set_embedding", spy)
    starts: list = []
    seen.starts = starts
    return seen


def blobs(n: int = 240) -> ad.AnnData:
    rng = np.random.default_rng(0)
    a = ad.AnnData(np.zeros((n, 1), np.float32))
    a.obsm[K.REP] = (rng.normal(size=(n, 4)) + 4 * (np.arange(n) % 3)[:, None]).astype(
        np.float32)
    return a


@pytest.mark.parametrize(("asked", "used", "negatives"), [
    (None, 100, UMAP_LEARN_NEGATIVE_SAMPLES), (7, 7, UMAP_LEARN_NEGATIVE_SAMPLES),
    (0, 500, UMAP_LEARN_NEGATIVE_SAMPLES)])
def test_umap_runs_and_records_the_epochs(epochs_run: list, asked: int | None,
                                          used: int, negatives: int) -> None:
    a = blobs()
    kwargs = {} if asked is None else {"umap_epochs": asked}
    cluster(a, seed=0, **kwargs)
    assert epochs_run == [(used, negatives, 1.0)]
    assert a.uns[K.UNS]["umap"]["n_epochs"] == used
    assert a.uns[K.UNS]["umap"]["negative_sample_rate"] == negatives
    assert a.uns[K.UNS]["umap"]["learning_rate"] == 1.0
    assert a.obsm[K.UMAP_GEOVAE].shape == (a.n_obs, 2)


@pytest.mark.parametrize(("asked", "used", "negatives", "rate"), [
    (None, 70, UMAP_NEGATIVE_SAMPLES, 1.43), (100, 100, UMAP_NEGATIVE_SAMPLES, 1.0),
    (0, 200, UMAP_LEARN_NEGATIVE_SAMPLES, 1.0)])
def test_more_cells_take_fewer_epochs_at_a_higher_learning_rate(
        epochs_run: list, asked: int | None, used: int, negatives: int, rate: float) -> None:
    """Above 10,000 cells the default is 70 epochs at 1.43 with 1 negative sample (issue 26:
    under 10 % of a 10-epoch fit of 20k cells), not the earlier 100 at 1, which
    ``umap_epochs=100`` still gives; 0 is umap-learn's defaults."""
    a = blobs(CHEAP_UMAP_CELLS + 1)
    kwargs = {} if asked is None else {"umap_epochs": asked}
    cluster(a, seed=0, **kwargs)
    assert epochs_run == [(used, negatives, rate)]
    record = a.uns[K.UNS]["umap"]
    assert (record["n_epochs"], record["negative_sample_rate"], record["learning_rate"]) == (
        used, negatives, rate)


def test_the_large_default_keeps_the_summed_step_of_100_epochs() -> None:
    """umap-learn's learning rate falls linearly to 0: the summed step is epochs x rate / 2."""
    assert LARGE_UMAP_EPOCHS * LARGE_UMAP_LEARNING_RATE == pytest.approx(UMAP_EPOCHS, rel=0.01)


def test_fewer_epochs_change_the_picture_and_the_seed_repeats_it() -> None:
    a, b, c = blobs(), blobs(), blobs()
    cluster(a, seed=0, umap_epochs=5)
    cluster(b, seed=0, umap_epochs=5)
    cluster(c, seed=0, umap_epochs=0)
    assert np.array_equal(a.obsm[K.UMAP_GEOVAE], b.obsm[K.UMAP_GEOVAE])
    assert not np.allclose(a.obsm[K.UMAP_GEOVAE], c.obsm[K.UMAP_GEOVAE])


def test_the_umap_starts_from_the_latents_principal_components(epochs_run: list) -> None:
    """geovae's epochs start from the embedding's first two principal components (recorded);
    umap-learn's defaults (0) keep its spectral start."""
    a = blobs()
    cluster(a, seed=0)
    start = np.asarray(epochs_run.starts[0])
    rep = a.obsm[K.REP].astype(np.float64)
    centred = rep - rep.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2]
    assert start.shape == (a.n_obs, 2)
    for j in range(2):  # each column is a principal component's scores (up to sign)
        assert abs(np.corrcoef(start[:, j], centred @ top[j])[0, 1]) > 0.999
    assert a.uns[K.UNS]["umap"]["init"] == "pca"
    b = blobs()
    cluster(b, seed=0, umap_epochs=0)
    assert epochs_run.starts[1] == "spectral" and b.uns[K.UNS]["umap"]["init"] == "spectral"


def test_umap_learn_default_by_size() -> None:
    assert (umap_learn_epochs(10000), umap_learn_epochs(10001)) == (500, 200)


@pytest.mark.parametrize("bad", [-1, 2.5, True, "70"])
def test_a_bad_epoch_count_is_refused(bad: object) -> None:
    with pytest.raises(OptionError, match="umap_epochs"):
        cluster(blobs(), umap_epochs=bad)  # type: ignore[arg-type]


def test_the_large_default_repeats_with_its_seed_and_uses_its_rate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Same seed, same picture at 1.43; 70 epochs at umap-learn's rate 1 differ from it (the
    rate reaches the optimiser)."""
    monkeypatch.setattr(importlib.import_module("geovae.tools.cluster"), "CHEAP_UMAP_CELLS", 100)
    a, b, c = blobs(), blobs(), blobs()
    cluster(a, seed=0)
    cluster(b, seed=0)
    cluster(c, seed=0, umap_epochs=LARGE_UMAP_EPOCHS)
    assert a.uns[K.UNS]["umap"]["learning_rate"] == LARGE_UMAP_LEARNING_RATE
    assert c.uns[K.UNS]["umap"]["learning_rate"] == 1.0
    assert np.array_equal(a.obsm[K.UMAP_GEOVAE], b.obsm[K.UMAP_GEOVAE])
    assert not np.allclose(a.obsm[K.UMAP_GEOVAE], c.obsm[K.UMAP_GEOVAE], atol=1e-3)
