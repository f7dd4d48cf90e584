"""Training a fitted c*GMΔVAE again continues from its mixture: the warm start (pretraining,
the GMM start, the hold) belongs to the first fit; a loaded model keeps its history, so it
counts as fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import geovae
from geovae.datasets import simulate_counts
from geovae.modules import mixture_start


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Calls of the mixture's start from a GMM (`mixture_start.start_mixture`)."""
    seen: list[int] = []
    real = mixture_start.start_mixture

    def spy(module, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(1)
        return real(module, *args, **kwargs)

    monkeypatch.setattr(mixture_start, "start_mixture", spy)
    return seen


def test_a_second_train_keeps_the_fitted_mixture(starts: list[int], tmp_path: Path) -> None:
    adata = simulate_counts(n_cells=300, n_genes=40, n_types=3, n_conditions=1, seed=0)
    model = geovae.CGMVAE(adata, seed=0, n_hidden=16, model_options={"n_clusters": 4})
    model.train(epochs=6, progress=False, patience=10**6)
    assert starts == [1] and model.module.warm_start > 0
    means = {k: v.clone() for k, v in model.module.prior_net.state_dict().items()}
    model.train(epochs=2, progress=False, patience=10**6)
    assert starts == [1], "the second train started the mixture again"
    assert model.module.warm_start > 0  # the option itself is kept (saved as given)
    moved = any(not np.allclose(v.cpu(), model.module.prior_net.state_dict()[k].cpu())
                for k, v in means.items())
    assert moved, "the components did not train in the second call"
    model.save(tmp_path / "m")
    assert geovae.CGMVAE.load(tmp_path / "m").history is not None  # a loaded model is fitted
