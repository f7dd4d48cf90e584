"""The ``"graph"`` merge rule's expression veto (`geovae.modules.graph_merge.expression_veto`,
issue 24): two components the latent's kNN graph joins are kept apart when their cells'
pooled expression (the library as offset) differs 2-fold in >= 20 % of the expressed genes,
as two real types the graph joins do (NK and CD8 T on the Kang data), and merged when the
smaller is the larger's shallow lobe (the same profile at a smaller library)."""

from __future__ import annotations

import numpy as np
import torch

from geovae.modules import graph_merge as gm
from geovae.modules.graph_merge import expression_differs, graph_groups

N_GENES = 200


def _counts(rng: np.random.Generator, profile: np.ndarray, cells: int, library: float
            ) -> np.ndarray:
    """Poisson counts (cells, genes) of ``profile`` (sums to 1) at about ``library``."""
    lib = rng.lognormal(np.log(library), 0.3, cells)
    return rng.poisson(lib[:, None] * profile[None])


def _joined(seed: int = 0, lobe: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-d means of 1,500 cells: component 0 (700 cells, N(0, 1)) and 1 (300, N((1, 0), 0.7^2)
    inside it), which the graph joins, and component 2 (500 cells) far away; and each
    component's summed counts (3, `N_GENES`). Component 1 is 0's shallow lobe (same
    profile, library 800 vs 1,000) when ``lobe``, else another type: 30 % of the genes 4-fold
    up or down."""
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal((0, 0), 1.0, (700, 2)), rng.normal((1, 0), 0.7, (300, 2)),
                        rng.normal((30, 0), 1.0, (500, 2))])
    labels = np.repeat([0, 1, 2], [700, 300, 500])
    base = rng.gamma(0.5, 1.0, N_GENES)
    other = base.copy()
    if not lobe:
        hit = rng.permutation(N_GENES)[: int(0.3 * N_GENES)]
        other[hit] *= np.where(np.arange(len(hit)) % 2 == 0, 4.0, 0.25)
    profiles = [base / base.sum(), other / other.sum(), np.roll(base, 7) / base.sum()]
    libraries = [1000.0, 800.0 if lobe else 1000.0, 1000.0]
    sums = np.stack([_counts(rng, profiles[k], int((labels == k).sum()), libraries[k]).sum(0)
                     for k in range(3)]).astype(float)
    return z, labels, sums


def test_the_expression_veto_keeps_two_types_apart_and_merges_a_shallow_lobe() -> None:
    """The graph joins components 0 and 1 in both cases (no counts given: [[0, 1]]); with the
    counts, the lobe (same profile, 80 % of the depth) is still merged and the other type is
    not. Broken once (graph_groups ignoring ``sums``): the type was merged, failed."""
    for lobe in (True, False):
        z, labels, sums = _joined(lobe=lobe)
        assert graph_groups(z, labels) == [[0, 1]]  # the graph joins them: the case is real
        assert graph_groups(z, labels, sums=sums) == ([[0, 1]] if lobe else []), lobe


def test_the_expression_veto_leaves_a_small_side_to_the_small_side_veto() -> None:
    """A side below `EXPRESSION_SHARE` of the cells is not judged by expression (its pooled
    rates are noise): with the share raised above component 1's, the type is merged."""
    z, labels, sums = _joined(lobe=False)
    old = gm.EXPRESSION_SHARE
    gm.EXPRESSION_SHARE = 0.6
    try:
        assert graph_groups(z, labels, sums=sums) == [[0, 1]]
    finally:
        gm.EXPRESSION_SHARE = old


def test_the_expression_test_does_not_flip_when_the_cells_are_replicated() -> None:
    """`expression_differs` reads pooled rates and counts per cell: every cell replicated 10
    times (sums and cells x 10) gives the same answer, for types, lobes and pairs near the
    20 % line. Broken once (a gene counted only where both sides sum >= 20 counts, a guard
    that grows with the cells): flipped, failed; a floor of 10 summed counts instead of 0.1
    per cell did not flip these pairs."""
    rng = np.random.default_rng(3)
    answers = set()
    for share in (0.0, 0.1, 0.18, 0.22, 0.3):
        base = rng.gamma(0.5, 1.0, N_GENES)
        other = base.copy()
        hit = rng.permutation(N_GENES)[: int(share * N_GENES)]
        other[hit] *= 4.0
        sums = np.stack([_counts(rng, base / base.sum(), 300, 1000.0).sum(0),
                         _counts(rng, other / other.sum(), 60, 900.0).sum(0)]).astype(float)
        cells = np.array([300.0, 60.0])
        once = expression_differs(sums, cells)
        assert once == expression_differs(10 * sums, 10 * cells), share
        answers.add(once)
    assert answers == {True, False}  # both sides of the line were tried


def test_the_merge_draws_carry_each_components_summed_counts() -> None:
    """``mixture_draws(..., means=True)`` on counts: ``sums`` (K, G) is the subsample's raw
    counts summed by each cell's argmax of q(y|z) at its posterior mean (the labels the
    graph rule reads). Broken once (the counts added to component 0): failed."""
    import warnings

    import geovae
    from geovae.datasets import simulate_counts
    from geovae.modules.deletion import mixture_probs, seeded_subsample
    from geovae.modules.merging import mixture_draws

    adata = simulate_counts(n_cells=600, n_genes=50, n_types=3, n_conditions=1, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", latent_dim=3, likelihood="nb",
                           model_options={"n_clusters": 5}, epochs=2, progress=False,
                           heldout_samples=0, seed=2)
    module, source, idx = model.module, model.source(adata), torch.arange(adata.n_obs)
    d = mixture_draws(module, source, idx, seed=7, max_cells=500, means=True)
    labels = mixture_probs(d["mean_logits"], module.active.cpu(), None).argmax(1).numpy()
    x = np.asarray(adata.X[seeded_subsample(idx, 500, 7).numpy()].todense()
                   if hasattr(adata.X, "todense") else adata.X[seeded_subsample(idx, 500, 7)])
    want = np.zeros((len(module.active), x.shape[1]))
    np.add.at(want, labels, x)
    assert d["sums"].shape == want.shape and want.sum() > 0
    assert np.allclose(d["sums"].numpy(), want)
