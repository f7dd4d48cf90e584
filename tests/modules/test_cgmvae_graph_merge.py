"""The ``"graph"`` merge rule (`geovae.modules.graph_merge`, issue 24 item 2): components
that the latent's kNN graph cannot tell apart are merged by the Leiden clusters' PAGA gap
rule. On a latent where each of 5 types is a core and two side lobes (K = 3 x truth
Gaussians, fitted exactly), the rule must end within one of the 5 types, keep them apart,
and refit each survivor to its type's cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch.distributions import Normal

from geovae.modules.deletion import mixture_probs
from geovae.modules.graph_merge import graph_groups, graph_merges, posterior_means, small_side_veto
from geovae.modules.merging import mixture_draws

#: each type: a core N(centre, 1) with 60% of its cells and two side lobes N(centre + 1.5 e_1
#: or + 1.5 e_2, 0.6^2) with 20% each; types 10 apart on the first axis
PIECES = ((0.0, 0.0, 1.0, 0.6), (1.5, 0.0, 0.6, 0.2), (0.0, 1.5, 0.6, 0.2))
N_TYPES, GAP = 5, 10.0


def _lobed_types(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(z (n, 2), type of each cell, logits of the exact posterior over the 3 x `N_TYPES`
    generating Gaussians, their means and sds per cell (n, K, 2))."""
    gen = torch.Generator().manual_seed(seed)
    locs, sds, weights = [], [], []
    for t in range(N_TYPES):
        for dx, dy, sd, share in PIECES:
            locs.append([GAP * t + dx, dy])
            sds.append([sd, sd])
            weights.append(share / N_TYPES)
    loc = torch.tensor(locs, dtype=torch.float64)
    sd = torch.tensor(sds, dtype=torch.float64)
    w = torch.tensor(weights, dtype=torch.float64)
    comp = torch.multinomial(w, n, True, generator=gen)
    z = loc[comp] + sd[comp] * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    logits = Normal(loc, sd).log_prob(z[:, None, :]).sum(-1) + torch.log(w)
    return (z, comp // len(PIECES), logits, loc.expand(n, -1, -1).clone(),
            sd.expand(n, -1, -1).clone())


def test_the_graph_rule_finds_the_types_at_three_times_their_number() -> None:
    """15 Gaussians for 5 types: the rule merges each type's core and lobes (the generating
    mixture's argmax: 15 in use before) and no two types; within one of 5 in use, ARI of
    the argmax after the merges >= 0.95. Broken once (graph_groups returning no groups):
    15 in use, the test failed."""
    z, types, logits, loc, scale = _lobed_types()
    active = torch.ones(logits.shape[1], dtype=torch.bool)
    before = mixture_probs(logits, active, None).argmax(1)
    assert len(torch.unique(before)) == 3 * N_TYPES
    new, merges = graph_merges(z, logits, loc, scale, active, z, logits)
    after = mixture_probs(logits, new, None).argmax(1).numpy()
    used = len(np.unique(after))
    assert abs(used - N_TYPES) <= 1, f"{used} components in use for {N_TYPES} types"
    assert adjusted_rand_score(types.numpy(), after) >= 0.95
    assert int(new.sum()) == logits.shape[1] - len(merges)
    for i, j, _, sd in merges:  # only pieces of one type (3 a type, consecutive) merged
        assert i // len(PIECES) == j // len(PIECES), (i, j)
        assert bool(torch.isfinite(sd).all())


def test_two_types_far_apart_are_never_one_group() -> None:
    """The rule's groups join only pieces of one type (no edge between types 10 apart), and
    it does join some (else the check above is empty: review F42)."""
    z, types, logits, _, _ = _lobed_types(seed=1)
    labels = logits.argmax(1).numpy()
    groups = graph_groups(z.numpy(), labels, seed=1)
    assert groups, "no components merged"
    for group in groups:
        assert len({c // len(PIECES) for c in group}) == 1, group



def _rare_beside_a_small_mixed_piece(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-d means, 1,895 cells, 5 components: two types of 900 (0 at the origin, 2 at x = 20),
    a 20-cell lobe of type 0 inside it (1, at x = 1.5, sd 0.3), a tight 15-cell rare type (3,
    x = 10, sd 0.2) and a 60-cell piece (4) one unit beside it."""
    rng = np.random.default_rng(seed)
    parts = [((0, 0), 1.0, 900), ((1.5, 0), 0.3, 20), ((20, 0), 1.0, 900),
             ((10, 0), 0.2, 15), ((11, 0), 0.3, 60)]
    z = np.concatenate([rng.normal(c, s, (n, 2)) for c, s, n in parts])
    return z, np.repeat(np.arange(len(parts)), [n for _, _, n in parts])


def test_the_small_side_veto_keeps_a_rare_type_and_merges_a_small_lobe() -> None:
    """PAGA caps a pair of small clusters with a few edges between them at 1: without the
    veto the 15-cell rare type (0.8 % of the cells, each of its cells' 15 neighbours mostly
    its own) is merged with the piece beside it; with it (the rule's default) it stays, and
    the 20-cell lobe (1 %), whose cells' neighbours are mostly its type's, is still merged.
    Broken once (the veto removed from graph_groups' default): [[0, 1], [3, 4]], failed."""
    z, labels = _rare_beside_a_small_mixed_piece()
    assert graph_groups(z, labels, veto=False) == [[0, 1], [3, 4]]  # the case is real
    assert graph_groups(z, labels) == [[0, 1]]


def test_the_small_side_veto_needs_both_a_small_side_and_few_edges_to_the_other() -> None:
    """`small_side_veto` on edge counts: 10 of 1,000 cells sending 20 of 150 edges (13 %) to
    the other side: vetoed; sending 60 (40 %): not; 100 of 1,000 cells sending 13 %: not."""
    sizes = np.array([10.0, 890.0, 100.0])
    edges = np.array([[130.0, 20.0, 0.0], [20.0, 13000.0, 330.0], [0.0, 195.0, 1305.0]])
    assert small_side_veto(edges, sizes, 0, 1) and small_side_veto(edges, sizes, 1, 0)
    edges[0] = [90.0, 60.0, 0.0]
    assert not small_side_veto(edges, sizes, 0, 1)
    assert not small_side_veto(edges, sizes, 2, 1)  # 195 of 1,500 = 13 %, but 10 % of cells

def test_the_merge_draws_carry_the_posterior_means_of_a_second_pass() -> None:
    """``mixture_draws(..., means=True)`` (the merge step's one pass): the draws as without
    ``means`` and `posterior_means`' means and logits, to the bit, on a subsample of two
    batches. Broken once (the means taken as the draws z): failed."""
    import warnings

    import geovae
    from geovae.datasets import make_blobs

    adata = make_blobs(n_cells=1500, n_blobs=3, n_conditions=1, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", latent_dim=3, likelihood="gaussian",
                           model_options={"n_clusters": 6}, epochs=2, progress=False,
                           heldout_samples=0, seed=4)
    module, source, idx = model.module, model.source(adata), torch.arange(adata.n_obs)
    plain = mixture_draws(module, source, idx, seed=7, max_cells=1300)
    both = mixture_draws(module, source, idx, seed=7, max_cells=1300, means=True)
    means, mean_logits = posterior_means(module, source, idx, seed=7, max_cells=1300)
    assert set(both) == set(plain) | {"means", "mean_logits"} and len(means) == 1300
    for key, value in [*plain.items(), ("means", means), ("mean_logits", mean_logits)]:
        assert both[key].dtype == value.dtype and torch.equal(both[key], value), key


@pytest.mark.slow
def test_the_graph_rule_finds_the_number_of_count_types_at_four_times_it() -> None:
    """Issue 24, item 2, on a fit: the issue-type simulation (`bench_clusters.py`'s
    ``issue2k``: 2,000 cells x 500 genes, 5 types, 3 conditions, seed 0), K = 20, default
    epochs, ``merge_rule="graph"``. On the same fit's kept weights (the merges run after
    training only) the graph rule gave 5 in use, ARI 0.999, the default ``"elbo"`` 10 in use,
    ARI 0.799 (benchmarks/results/clusters_graph_2026-12-07.jsonl, set development). Run
    2026-12-07: passed (5 in use, ARI 0.999, 58 s); with ``merge_rule="elbo"`` it failed
    (10 in use, ARI 0.799)."""
    from helpers import mixture_on_counts

    from geovae.datasets import simulate_counts

    adata = simulate_counts(n_cells=2000, n_genes=500, n_types=5, n_conditions=3,
                            condition_prob=0.2, seed=0)
    ari, used = mixture_on_counts(adata, k=20, seed=0, epochs=None, merge_rule="graph")
    print(f"issue2k, K = 20: ARI {ari:.3f}, {used} in use")
    assert abs(used - 5) <= 1, f"{used} components in use for 5 types"
    assert ari >= 0.95
