"""Integration scores: high when batches mix within types, low when a latent is split by
batch (the scores can fail), in every latent geometry; the same numbers as scib-metrics."""

from __future__ import annotations

import numpy as np
import pytest

from geovae.tools.mixing import integration_scores, query_mixing

MIXING = ("ilisi", "ilisi_per_label", "kbet", "batch_asw")


def _latents(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray]:
    """(mixed, split, batch, labels): three types; in `split` batch 1 is moved far away."""
    rng = np.random.default_rng(seed)
    labels, batch = rng.integers(0, 3, n), rng.integers(0, 2, n)
    mixed = rng.normal(0, 5, (3, 8))[labels] + rng.normal(0, 1, (n, 8))
    split = mixed.copy()
    split[:, 0] += 20 * batch
    return mixed, split, batch, labels


def test_mixed_scores_high_and_split_by_batch_scores_low() -> None:
    mixed, split, batch, labels = _latents()
    good = integration_scores(mixed, batch, labels, n_neighbors=30)
    bad = integration_scores(split, batch, labels, n_neighbors=30)
    print({k: (round(good[k], 3), round(bad[k], 3)) for k in good})
    assert good["ilisi"] > 0.7 and good["ilisi_per_label"] > 0.7 and good["kbet"] > 0.8
    assert good["batch_asw"] > 0.9
    assert bad["ilisi"] < 0.05 and bad["ilisi_per_label"] < 0.05 and bad["kbet"] < 0.05
    assert bad["batch_asw"] < good["batch_asw"] - 0.5
    # types stay apart in both; the split latent's k-means finds batches, not types
    assert good["nmi"] > 0.95 and good["ari"] > 0.95 and good["label_asw"] > 0.8
    assert bad["ari"] < 0.5
    assert good["n_cells"] == 600 and good["n_batches"] == 2 and good["n_labels"] == 3


@pytest.mark.parametrize("geometry", ["sphere", "hyperbolic"])
def test_curved_latents_use_their_geometry(geometry: str) -> None:
    import torch

    from geovae.geometry.manifolds import get_manifold

    mixed, split, batch, labels = _latents()
    manifold = get_manifold(geometry)

    def on_manifold(x: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.concatenate([np.zeros((len(x), 1)), x / 10], 1))
        return manifold.expmap0(t).numpy()

    good = integration_scores(on_manifold(mixed), batch, labels, n_neighbors=30,
                              geometry=geometry)
    bad = integration_scores(on_manifold(split), batch, labels, n_neighbors=30,
                             geometry=geometry)
    assert good["ilisi_per_label"] > 0.6 and bad["ilisi_per_label"] < 0.05, (good, bad)
    assert good["kbet"] > 0.6 and bad["kbet"] < 0.05


def test_query_mixing_balances_sources_and_keeps_shared_labels() -> None:
    mixed, split, batch, labels = _latents()
    ref, query = batch == 0, batch == 1
    qlab = labels[query].astype(str)
    qlab[:20] = "unknown"  # not a reference label: left out
    out = query_mixing(mixed[ref], labels[ref].astype(str), mixed[query], qlab, "euclidean")
    n = min(ref.sum(), query.sum() - 20)
    assert out["n_cells"] == 2 * n and out["ilisi_per_label"] > 0.7
    low = query_mixing(split[ref], labels[ref].astype(str), split[query], qlab, "euclidean")
    assert low["ilisi_per_label"] < 0.05
    with pytest.raises(ValueError, match="two batches"):
        integration_scores(mixed, np.zeros(len(mixed)), labels)


@pytest.mark.slow
def test_same_numbers_as_scib_metrics() -> None:
    """A port, not an approximation: iLISI, kBET and the cell-type silhouette agree with
    scib-metrics itself (its jax kernels take ~30-100 s to import and compile here)."""
    scib = pytest.importorskip("scib_metrics")
    from scib_metrics.nearest_neighbors import NeighborsResults

    from geovae.graph.neighbors import knn
    from geovae.tools.mixing import _mixing

    z, _, batch, labels = _latents(n=300, seed=1)
    ours = integration_scores(z, batch, labels, n_neighbors=30)
    dist, idx = knn(z, z, 31, "euclidean")  # scib's graphs hold the cell itself first
    graph = NeighborsResults(indices=idx, distances=dist.astype(np.float32))
    assert ours["ilisi"] == pytest.approx(float(scib.ilisi_knn(graph, batch)), abs=2e-3)
    assert _mixing(z, batch, 30, "euclidean")[1] == pytest.approx(
        float(scib.kbet(graph, batch)[0]), abs=1e-9)
    assert ours["label_asw"] == pytest.approx(float(scib.silhouette_label(z, labels)),
                                              abs=1e-4)
