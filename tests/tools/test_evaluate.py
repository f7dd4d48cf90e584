"""Held-out log-likelihood and posterior predictive checks in `fit`'s record; the paired
comparison of `compare_latents`."""

from __future__ import annotations

import importlib
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import geovae
from geovae.datasets import simulate_counts
from geovae.models import GeoVAE
from geovae.tools import compare as C
from geovae.tools import evaluate as E
from geovae.training import evaluate
from geovae.training.parts import split_indices


@pytest.fixture(scope="module")
def fitted() -> tuple[ad.AnnData, GeoVAE]:
    adata = simulate_counts(n_cells=300, n_genes=40, n_types=3, n_conditions=1, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, latent="hyperbolic", latent_dim=2, n_hidden=32, epochs=15,
                           seed=3, progress=False)
    return adata, model


def test_fit_records_heldout_loglik_on_the_test_split(fitted) -> None:
    """The held-out cells are the test split: 5% of the cells drawn first with the model's
    seed, disjoint from the validation cells early stopping watched (and from training)."""
    adata, model = fitted
    rec = adata.uns["geovae"]["heldout_loglik"]
    train, val, test = split_indices(adata.n_obs, 0.1, torch.Generator().manual_seed(3), 0.05)
    assert (len(train), len(val), len(test)) == (255, 30, 15)
    np.testing.assert_array_equal(model.history.validation_indices.numpy(), val.numpy())
    np.testing.assert_array_equal(model.history.test_indices.numpy(), test.numpy())
    idx, which = model.heldout_indices()
    np.testing.assert_array_equal(idx, test.numpy())
    assert not set(idx) & set(val.numpy().tolist())
    assert which == rec["cells"] == "test" and rec["kind"] == "marginal"
    assert rec["n_samples"] == E.HELDOUT_SAMPLES == 20 and rec["n_cells"] == 15
    assert rec["per_feature"] == pytest.approx(rec["per_cell"] / 40)
    state = torch.random.get_rng_state()
    ll = model.log_marginal_of(model.source(), idx, 20)  # seeded: the same numbers again
    assert torch.equal(state, torch.random.get_rng_state())  # and the global RNG untouched
    assert rec["per_cell"] == pytest.approx(ll.mean(), rel=1e-9)
    assert rec["se"] == pytest.approx(ll.std(ddof=1) / np.sqrt(15), rel=1e-9)
    # the gain over half the samples, from the same draws: the first 10 of the 20 weights
    from scipy.special import logsumexp

    log_w = model.log_weights_of(model.source(), idx, 20)
    half = logsumexp(log_w[:10], axis=0) - np.log(10)
    assert rec["gain_vs_half"] == pytest.approx((ll - half).mean(), rel=1e-9)
    assert rec["gain_vs_half"] > -3 * rec["gain_vs_half_se"]  # IWAE rises with S
    # the ELBO of these cells is below the IWAE (up to Monte Carlo noise over 15 cells)
    elbo = evaluate(model.module, model.source(), torch.as_tensor(idx), 64)
    assert rec["per_cell"] > -elbo - 3 * rec["se"]
    # ... and more samples do not lower it
    assert model.log_marginal_of(model.source(), idx, 200).mean() > ll.mean() - 3 * rec["se"]
    line = E.describe_heldout(rec)
    assert line.startswith("held-out log-likelihood of 15 test cells") and "±" in line


def test_training_never_sees_the_test_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch the training steps take and every validation cell early stopping scores
    comes from outside the test split; the c*GMΔVAE's delete moves too."""
    import geovae.training.trainer as T

    seen: list[np.ndarray] = []
    original = T.evaluate_sum

    def spy(module, source, idx, *args):  # noqa: ANN001, ANN202
        seen.append(idx.cpu().numpy().copy())
        return original(module, source, idx, *args)

    monkeypatch.setattr(T, "evaluate_sum", spy)
    adata = simulate_counts(n_cells=400, n_genes=20, n_types=2, n_conditions=1, seed=1)
    model = GeoVAE(adata, latent_dim=2, n_hidden=16, seed=5)
    source = model.source()
    taken: list[np.ndarray] = []
    real_take, real_batches = source.take, source.batches
    monkeypatch.setattr(source, "take", lambda idx: (taken.append(idx.cpu().numpy().copy()),
                                                     real_take(idx))[1])
    monkeypatch.setattr(source, "batches", lambda idx, *a, **k: (
        taken.append(idx.cpu().numpy().copy()), real_batches(idx, *a, **k))[1])
    model.train(epochs=3, progress=False)
    test = set(model.history.test_indices.numpy().tolist())
    assert len(test) == 20  # 5% of 400
    assert seen and not test & set(np.concatenate(seen).tolist())
    assert taken and not test & set(np.concatenate(taken).tolist())
    assert model.train_params["test_fraction"] == 0.05


def test_fit_records_ppc_for_counts(fitted) -> None:
    adata, _ = fitted
    ppc = adata.uns["geovae"]["ppc"]
    assert ppc["n_cells"] == 300 and ppc["n_genes_compared"] <= 40
    assert set(ppc["per_gene"]) == {f"{a}_{b}" for a in ("observed", "model")
                                    for b in ("mean", "var", "zero_frac")}
    obs = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    np.testing.assert_allclose(ppc["per_gene"]["observed_mean"], obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(ppc["per_gene"]["observed_zero_frac"], (obs == 0).mean(0))
    np.testing.assert_allclose(ppc["per_gene"]["observed_var"], obs.var(0, ddof=1), rtol=1e-4)
    # 15 epochs already learn which genes are high (0.45 with the 5% test split held out)
    assert ppc["log_mean_corr"] > 0.4


def test_no_ppc_for_gaussian_and_no_split_for_tiny_data() -> None:
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.normal(size=(30, 4)).astype(np.float32))
    geovae.fit(adata, likelihood="gaussian", latent_dim=2, epochs=2, progress=False)
    rec = adata.uns["geovae"]
    assert "ppc" not in rec
    assert rec["heldout_loglik"]["cells"] == "training" and rec["heldout_loglik"]["n_cells"] == 30
    geovae.fit(adata, likelihood="gaussian", latent_dim=2, epochs=2, progress=False,
               heldout_samples=0)
    assert "heldout_loglik" not in adata.uns["geovae"]


# ---------------------------------------------------------------- posterior predictive checks
N_CELLS, N_GENES = 1500, 50


def _truth(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gene proportions, library sizes, inverse dispersions. Gene 0 carries 80% of every
    library and is never zero-inflated, so dropping counts of the others barely changes the
    library size the model scales its means by."""
    rng = np.random.default_rng(seed)
    p = np.concatenate([[0.8], 0.2 * rng.dirichlet(np.full(N_GENES - 1, 2.0))])
    library = rng.uniform(500, 3000, N_CELLS)
    theta = np.concatenate([[1e4], rng.uniform(0.5, 3.0, N_GENES - 1)])
    return p, library, theta


def _counts(zero_inflation: float = 0.0, seed: int = 1) -> ad.AnnData:
    p, library, theta = _truth()
    rng = np.random.default_rng(seed)
    mu = library[:, None] * p[None]
    x = rng.poisson(rng.gamma(theta, mu / theta))
    drop = rng.random(x.shape) < zero_inflation
    drop[:, 0] = False
    x[drop] = 0
    return ad.AnnData(x.astype(np.float32))


def _fixed_model(adata: ad.AnnData, likelihood: str, theta: np.ndarray,
                 zero_inflation: float = 0.0) -> GeoVAE:
    """A model whose p(x|z) is NB/ZINB(p * library, theta), whatever z (set, not trained)."""
    p, _, _ = _truth()
    model = GeoVAE(adata, likelihood=likelihood, latent_dim=2, n_hidden=8, dropout=0.0)
    head = model.module.likelihood
    with torch.no_grad():
        head.scale.weight.zero_()
        head.scale.bias.copy_(torch.as_tensor(np.log(p)))
        head.log_theta.copy_(torch.as_tensor(np.log(theta)))
        if head.dropout is not None:
            head.dropout.weight.zero_()
            head.dropout.bias.fill_(float(np.log(zero_inflation / (1 - zero_inflation))))
    return model


def test_ppc_passes_the_true_model_and_flags_a_poisson_like_one() -> None:
    adata = _counts()
    _, _, theta = _truth()
    right = E.posterior_predictive_check(_fixed_model(adata, "nb", theta))
    poisson = E.posterior_predictive_check(_fixed_model(adata, "nb", np.full(N_GENES, 1e4)))
    assert right["log_mean_corr"] > 0.99 and poisson["log_mean_corr"] > 0.99  # means agree
    assert abs(right["log_var_ratio_median"]) < 0.1
    assert right["zero_frac_mae"] < 0.02
    assert poisson["log_var_ratio_median"] < -0.8  # far too little variance ...
    assert poisson["zero_frac_bias"] < -0.05  # ... and too few zeros
    assert poisson["log_var_ratio_mae"] > 5 * right["log_var_ratio_mae"]


def test_ppc_flags_excess_zeros_that_nb_cannot_make() -> None:
    adata = _counts(zero_inflation=0.4)
    _, _, theta = _truth()
    zinb = E.posterior_predictive_check(_fixed_model(adata, "zinb", theta, 0.4))
    nb = E.posterior_predictive_check(_fixed_model(adata, "nb", theta))
    assert zinb["zero_frac_mae"] < 0.04 and abs(zinb["zero_frac_bias"]) < 0.04
    assert nb["zero_frac_bias"] < -0.25  # the NB model makes far too few zeros
    assert nb["zero_frac_mae"] > 5 * zinb["zero_frac_mae"]


def test_ppc_is_seeded() -> None:
    adata = _counts()
    model = _fixed_model(adata, "nb", _truth()[2])
    a = E.posterior_predictive_check(model, max_cells=500)
    b = E.posterior_predictive_check(model, max_cells=500)
    c = E.posterior_predictive_check(model, max_cells=500, seed=1)
    assert a["n_cells"] == 500
    np.testing.assert_array_equal(a["per_gene"]["model_var"], b["per_gene"]["model_var"])
    assert not np.array_equal(a["per_gene"]["model_var"], c["per_gene"]["model_var"])


# ---------------------------------------------------------------- compare_latents
def _fake_run(values: dict[str, list[float]], monkeypatch: pytest.MonkeyPatch) -> None:
    """compare_latents without training: the held-out value of (latent, seed) is given."""
    fit_module = importlib.import_module("geovae.tools.fit")  # (geovae.tools.fit: the verb)

    class Fake:
        def __init__(self, latent: str, seed: int):
            self.latent, self.seed = latent, seed
            self.spec = type("Spec", (), {"n_features": 10})()

    monkeypatch.setattr(fit_module, "train_model",
                        lambda adata, latent, seed, **kw: Fake(latent, seed))
    monkeypatch.setattr(E, "heldout_loglik", lambda m, n, c: {
        "per_cell": values[m.latent][m.seed], "n_cells": 50})


def test_compare_latents_calls_a_difference_only_when_paired_test_says_so(monkeypatch) -> None:
    base = np.array([-100.0, -102.0, -98.0, -101.0, -99.0])  # seeds differ a lot ...
    values = {"euclidean": list(base),
              "sphere": list(base - 1.0 + np.array([0.1, -0.1, 0.05, -0.05, 0.0])),  # ... but
              # sphere is below euclidean at every seed: worse
              "hyperbolic": list(base + np.array([0.8, -0.9, 0.7, -0.6, -0.3]))}  # noise
    _fake_run(values, monkeypatch)
    table = C.compare_latents(None, seeds=range(5))
    assert list(table.latent) == ["euclidean", "hyperbolic", "sphere"]
    row = table.set_index("latent")
    assert np.isnan(row.loc["euclidean", "p_value"]) and not row.loc["euclidean",
                                                                      "worse_than_best"]
    assert row.loc["sphere", "p_value"] < 0.05 and row.loc["sphere", "worse_than_best"]
    assert row.loc["sphere", "diff_vs_best"] == pytest.approx(-1.0)
    assert row.loc["hyperbolic", "p_value"] > 0.05 and not row.loc["hyperbolic",
                                                                    "worse_than_best"]
    # an unpaired view would not see the sphere difference: the seeds' spread is larger
    assert row.loc["sphere", "sd"] > abs(row.loc["sphere", "diff_vs_best"])
    assert row.loc["euclidean", "loglik_per_feature"] == pytest.approx(-10.0)
    text = C.format_comparison(table)
    assert "worse (p < 0.05)" in text and "paired t-test" in text


def test_compare_latents_end_to_end() -> None:
    adata = simulate_counts(n_cells=200, n_genes=20, n_types=2, n_conditions=1, seed=0)
    before = set(adata.uns), set(adata.obsm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = geovae.compare_latents(adata, latents=("euclidean", "sphere"), seeds=(0, 1),
                                       n_samples=10, latent_dim=2, n_hidden=16, epochs=2)
    assert isinstance(table, pd.DataFrame) and len(table) == 2
    assert set(table.latent) == {"euclidean", "sphere"}
    assert table.loglik_per_cell.is_monotonic_decreasing
    assert (table.n_cells == 10).all() and (table.n_seeds == 2).all()  # the 5% test split
    assert (set(adata.uns), set(adata.obsm)) == before  # the input is not modified
