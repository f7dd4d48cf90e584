"""Temperature scaling of the c*GMΔVAE's label probabilities (`geovae.models.calibration`):
the fit recovers a known temperature, shrinks towards 1 with few cells, never moves the
argmax; a semi-supervised fit lowers the held-out NLL and ECE with it and saves it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from helpers import PBMC

import geovae
from geovae.errors import InputError
from geovae.models import CGMVAE, GeoVAE
from geovae.models.calibration import LabelTemperature, fit_temperature, temper
from geovae.models.cgmvae import expected_calibration_error


def _calibrated(n: int, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them (calibrated by construction)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = (rng.random(n)[:, None] > probs.cumsum(1)).sum(1)
    return probs, np.minimum(truth, k - 1)


@pytest.mark.parametrize("true_t", [1.6, 2.5])
def test_fit_recovers_a_known_temperature(true_t: float) -> None:
    probs, truth = _calibrated(3000)
    seen = temper(probs, 1.0 / true_t)  # over-confident by true_t
    fitted = fit_temperature(seen, truth)
    # 3000 cells: the MLE's s.e. of log T is ~0.03; the prior (sd 0.5) pulls by < 0.01
    assert abs(np.log(fitted / true_t)) < 0.1
    assert expected_calibration_error(seen, truth) > 0.05
    assert expected_calibration_error(temper(seen, fitted), truth) < 0.03
    np.testing.assert_array_equal(temper(seen, fitted).argmax(1), seen.argmax(1))
    # under-confident by as much: the fit only softens (T >= 1), so it leaves them alone
    assert fit_temperature(temper(probs, true_t), truth) == pytest.approx(1.0, abs=1e-3)
    assert fit_temperature(seen, truth, prior_sd=np.inf) == pytest.approx(fitted, rel=0.05)


def test_few_cells_shrink_towards_one_and_zeros_stay() -> None:
    probs, truth = _calibrated(3000, seed=1)
    seen = temper(probs, 1 / 2.5)
    few = [fit_temperature(seen[i:i + 5], truth[i:i + 5]) for i in range(0, 500, 5)]
    free = [fit_temperature(seen[i:i + 5], truth[i:i + 5], prior_sd=np.inf)
            for i in range(0, 500, 5)]
    assert np.std(np.log(few)) < 0.5 * np.std(np.log(free))  # the prior tames 5-cell fits
    assert fit_temperature(seen[:0], truth[:0]) == 1.0
    assert fit_temperature(seen, truth, prior_sd=0) == 1.0
    p = np.array([[0.7, 0.3, 0.0]], dtype=np.float32)
    assert temper(p, 1.0) is p
    out = temper(p, 2.0)
    assert out.dtype == np.float32 and out[0, 2] == 0
    root = np.sqrt([[0.7, 0.3, 0.0]])
    np.testing.assert_allclose(out, root / root.sum(), rtol=1e-6)


def test_saved_temperature_is_checked(tmp_path: Path) -> None:
    assert LabelTemperature.from_saved({"temperature": 2, "n_cells": 3}, tmp_path) \
        == LabelTemperature(2.0, 3)
    for bad in ({"temperature": 0, "n_cells": 3}, {"temperature": "x", "n_cells": 1},
                {"temperature": float("nan"), "n_cells": 1}, {"n_cells": 1}, [2.0], None):
        with pytest.raises(InputError, match="label_temperature"):
            LabelTemperature.from_saved(bad, tmp_path)


@pytest.mark.slow
def test_semi_supervised_fit_is_better_calibrated_with_its_temperature(tmp_path: Path) -> None:
    adata = ad.read_h5ad(PBMC)
    truth = adata.obs["bulk_labels"].astype(str).to_numpy()
    hidden = np.random.default_rng(7).random(adata.n_obs) < 0.8
    col = truth.astype(object).copy()
    col[hidden] = np.nan
    adata.obs["bulk_labels"] = col
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", label_key="bulk_labels", epochs=150,
                           progress=False, seed=7)
    cal = adata.uns["geovae"]["calibration"]
    scaling = model.label_temperature
    assert cal["temperature"] == scaling.value and cal["temperature_cells"] == scaling.n_cells
    assert scaling.n_cells > 0 and scaling.value > 1.2  # over-confident before
    assert any(f"temperature {scaling.value:.2f}" in n for n in adata.uns["geovae"]["notes"])
    cats = list(model.spec.label_categories)
    keep = np.isin(truth, cats) & hidden
    codes = np.array([cats.index(x) for x in truth[keep]])
    tempered = adata.obsm["geovae_cluster_probs"][keep][:, :len(cats)]
    raw = model.cluster_probs_of(model.source(), tempered=False)[keep][:, :len(cats)]
    tempered, raw = (p / p.sum(1, keepdims=True) for p in (tempered, raw))
    np.testing.assert_array_equal(tempered.argmax(1), raw.argmax(1))
    nll = {name: -np.log(p[np.arange(len(codes)), codes].clip(1e-12)).mean()
           for name, p in (("tempered", tempered), ("raw", raw))}
    ece = {name: expected_calibration_error(p, codes)
           for name, p in (("tempered", tempered), ("raw", raw))}
    print(f"T {scaling.value:.2f} on {scaling.n_cells} cells; hidden cells: NLL {nll}, "
          f"ECE {ece}")
    assert nll["tempered"] < nll["raw"] - 0.05 and ece["tempered"] < ece["raw"] - 0.02
    # saved with the model: a loaded model gives the same probabilities; without the field
    # (a model saved before temperatures) T = 1
    model.save(tmp_path / "m")
    loaded = GeoVAE.load(tmp_path / "m")
    assert loaded.label_temperature == scaling
    np.testing.assert_allclose(loaded.get_cluster_probs(adata), adata.obsm["geovae_cluster_probs"],
                               atol=1e-6)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["label_temperature"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    old = GeoVAE.load(tmp_path / "m")
    assert old.label_temperature == LabelTemperature()
    np.testing.assert_allclose(old.get_cluster_probs(adata),
                               model.cluster_probs_of(model.source(), tempered=False), atol=1e-6)


def test_unsupervised_fit_keeps_temperature_one() -> None:
    adata = ad.read_h5ad(PBMC)[:200].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", epochs=2, progress=False,
                           model_options={"n_clusters": 4})
    assert isinstance(model, CGMVAE) and model.label_temperature == LabelTemperature()
    assert "calibration" not in adata.uns["geovae"]
    np.testing.assert_array_equal(adata.obsm["geovae_cluster_probs"],
                                  model.cluster_probs_of(model.source(), tempered=False))
