"""Merge rules of the c*GMΔVAE (`geovae.modules.merging`, issue 24): ``"modes"`` merges
components that make one mode of the mixture density (Hennig 2010's ridgeline ratio),
``"demp"`` components the classifier confuses; ``"elbo"`` only merges where one Gaussian
fits better than two. On a latent where every type is a core plus a side lobe (two Gaussians
per type, as the count data's shallow cells make them), the overlap rules find the number
of types and the -ELBO rule does not."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch.distributions import Normal

import geovae
from geovae.modules import merging
from geovae.modules.cgmvae import CGMVAEModule
from geovae.modules.deletion import mixture_probs
from geovae.modules.merging import (
    DEMP_CUTOFF,
    RIDGE_RATIO,
    dip_ratio,
    greedy_merges,
    greedy_overlap_merges,
    merged_component,
    pair_statistics,
    ridge_ratio,
)
from geovae.nn.latents import make_latent

#: each type: a core N(centre, 1) with 70% of its cells and a side lobe N(centre + 1.5,
#: 0.6^2) on the first axis with 30% (unit sd on the second); types 10 apart
CORE, LOBE, SHIFT, LOBE_SD, GAP = 0.7, 0.3, 1.5, 0.6, 10.0


def _cored_types(n_types: int, n: int = 3000, seed: int = 0,
                 gap: float = GAP) -> tuple[torch.Tensor, ...]:
    """(z (n, 2), type of each cell, logits of the exact posterior over the 2 x n_types
    generating Gaussians, their means and sds per cell (n, K, 2), log-densities (n, K),
    their mass): the generating mixture, fitted exactly."""
    gen = torch.Generator().manual_seed(seed)
    locs, sds, weights = [], [], []
    for t in range(n_types):
        locs += [[gap * t, 0.0], [gap * t + SHIFT, 0.0]]
        sds += [[1.0, 1.0], [LOBE_SD, 1.0]]
        weights += [CORE / n_types, LOBE / n_types]
    loc = torch.tensor(locs, dtype=torch.float64)
    sd = torch.tensor(sds, dtype=torch.float64)
    comp = torch.multinomial(torch.tensor(weights, dtype=torch.float64), n, True,
                             generator=gen)
    z = loc[comp] + sd[comp] * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    log_pz = Normal(loc, sd).log_prob(z[:, None, :]).sum(-1)
    logits = log_pz + torch.log(torch.tensor(weights, dtype=torch.float64))
    return (z, comp // 2, logits, loc.expand(n, -1, -1).clone(), sd.expand(n, -1, -1).clone(),
            log_pz)


@pytest.mark.parametrize("rule", ["modes", "demp"])
def test_the_overlap_rules_find_the_number_of_cored_types(rule: str) -> None:
    """4 types, each a core and a side lobe (8 Gaussians, one mode per type): the overlap
    rules merge each lobe into its core (4 components, every type one cluster), never two
    types; the -ELBO rule merges nothing (two Gaussians are the true model of each type)."""
    z, types, logits, loc, sd, log_pz = _cored_types(4)
    active = torch.ones(8, dtype=torch.bool)
    new, merges = greedy_overlap_merges(z, logits, loc, sd, active, rule)
    assert int(new.sum()) == 4, f"{rule}: {int(new.sum())} components for 4 types"
    pred = mixture_probs(logits, new, None).argmax(1)
    assert adjusted_rand_score(types.numpy(), pred.numpy()) > 0.999
    assert all(i // 2 == j // 2 for i, j, _, _ in merges)  # lobe and core of one type
    alpha = torch.full((8,), 1 / 8, dtype=torch.float64)
    kept, elbo_merges = greedy_merges(z, logits, loc, log_pz, alpha, active, 1.0)
    assert elbo_merges == [] and bool(kept.all())


def _overlap_merges_as_first_written(z, logits, loc, scale, active, rule, cutoff):  # noqa: ANN001, ANN202
    """`greedy_overlap_merges` as cc6a311 wrote it (both statistics for every pair, q(y|z)
    three times a round), with one change since: j's mean weighs by the mass i receives
    (F11, `test_an_overlap_merge_refits_to_the_cells_the_survivor_receives`)."""
    cutoff = (RIDGE_RATIO if rule == "modes" else DEMP_CUTOFF) if cutoff is None else cutoff
    column = 2 if rule == "modes" else 3
    active, loc, scale = active.clone(), loc.clone(), scale.clone()
    merges = []
    while int(active.sum()) > 1:
        passing = [s for s in pair_statistics(logits, loc, scale, active) if s[column] > cutoff]
        if not passing:
            break
        i, j = max(passing, key=lambda s: s[column])[:2]
        counts = mixture_probs(logits, active, None).sum(0)
        active[j] = False
        resp = mixture_probs(logits, active, None)[:, i]
        counts[j] = (resp.sum() - counts[i]).clamp(min=0.0)
        a, mu, sd = merged_component(z, loc, resp, i, j, counts)
        loc[:, i], scale[:, i] = mu, sd
        merges.append((i, j, a, sd))
    return active, merges


@pytest.mark.parametrize(("rule", "cutoff"), [("modes", None), ("modes", 0.01),
                                              ("demp", None), ("demp", 1e-4)])
def test_overlap_merges_compute_only_their_rule_and_merge_as_before(
        rule: str, cutoff: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rule computes only its own statistic (``demp`` never walks a ridgeline) and makes
    exactly the merges the first version made (with the F11 weighting), to the last bit; the
    small cutoffs also merge types, so merged components are merged again."""
    z, _, logits, loc, sd, _ = _cored_types(4, n=1500, gap=4.0)
    logits = logits + 0.5 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(1),
                                        dtype=logits.dtype)  # a classifier, not the truth
    active = torch.ones(8, dtype=torch.bool)
    old_active, old = _overlap_merges_as_first_written(z, logits, loc, sd, active, rule, cutoff)
    assert len(old) >= (7 if cutoff else 4)
    if rule == "demp":
        def no_ridge(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            raise AssertionError("demp computed a ridge ratio")

        monkeypatch.setattr(merging, "ridge_ratio", no_ridge)
    new_active, new = greedy_overlap_merges(z, logits, loc, sd, active, rule, cutoff=cutoff)
    assert torch.equal(new_active, old_active)
    assert [(i, j, a) for i, j, a, _ in new] == [(i, j, a) for i, j, a, _ in old]
    assert all(torch.equal(n[3], o[3]) for n, o in zip(new, old, strict=True))


def test_an_overlap_merge_refits_to_the_cells_the_survivor_receives() -> None:
    """F11: components i (600 cells at 0) and j (300 cells at 1) make one mode, so ``modes``
    merges them, but the classifier sends j's cells to a third component k (at 10) once j
    is gone. i receives nothing, so its mean stays where it was and its sd is its own cells'
    (before: the mean moved 23% of the way to j's, by j's whole mass, and the sd was fitted
    around that mean to i's cells alone)."""
    gen = torch.Generator().manual_seed(0)
    n_i, n_j, n_k = 600, 300, 600
    z = torch.cat([torch.randn(n_i, 1, generator=gen, dtype=torch.float64),
                   1.0 + torch.randn(n_j, 1, generator=gen, dtype=torch.float64),
                   10.0 + torch.randn(n_k, 1, generator=gen, dtype=torch.float64)])
    q = torch.tensor([[1.0, 0.0, 0.0]] * n_i + [[0.0, 0.6, 0.4]] * n_j
                     + [[0.0, 0.0, 1.0]] * n_k, dtype=torch.float64)
    logits = q.clamp(min=1e-30).log()
    n = len(z)
    loc = torch.tensor([0.0, 1.0, 10.0], dtype=torch.float64)[None, :, None].expand(n, 3, 1)
    sd = torch.ones(n, 3, 1, dtype=torch.float64)
    active, merges = greedy_overlap_merges(z, logits, loc.clone(), sd,
                                           torch.ones(3, dtype=torch.bool), "modes")
    assert [(i, j) for i, j, _, _ in merges] == [(0, 1)] and active.tolist() == [True, False, True]
    (_, _, a, merged_sd), = merges
    assert a == pytest.approx(1.0, abs=1e-9)  # the mean stays at i's
    own = z[:n_i, 0]
    assert merged_sd.item() == pytest.approx(float(own.square().mean().sqrt()), rel=1e-6)


def test_dip_ratio_matches_the_closed_form_of_two_equal_gaussians() -> None:
    """An equal-weight mixture of N(0, 1) and N(delta, 1) is unimodal exactly when delta <= 2
    (Ray & Lindsay); at delta = 3 its dip is f(1.5) / f(0) in closed form."""
    def ratio(delta: float) -> float:
        loc = torch.tensor([[[0.0], [delta]]], dtype=torch.float64)
        return ridge_ratio(loc, torch.ones_like(loc), torch.tensor([1.0, 1.0],
                                                                   dtype=torch.float64), 0, 1)

    assert ratio(1.9) == pytest.approx(1.0, abs=1e-12)
    f = lambda x: math.exp(-x * x / 2) + math.exp(-(x - 3) ** 2 / 2)  # noqa: E731
    # its peaks lie just inside the means (f(0) is 0.1% below them); the dip is at 1.5
    assert ratio(3.0) == pytest.approx(f(1.5) / f(0.0), rel=0.02)
    assert ratio(8.0) == pytest.approx(2 * math.exp(-8), rel=0.02)  # f(4) / f(0)
    assert dip_ratio(torch.tensor([0.0, -1.0, -3.0, -1.0, 0.0])) == pytest.approx(math.exp(-3))


def test_a_bad_merge_rule_is_one_line() -> None:
    """An unknown ``merge_rule`` is an `OptionError` naming the choices."""
    with pytest.raises(geovae.OptionError, match="merge_rule.*elbo, modes, demp, lobes, graph"):
        CGMVAEModule(6, make_latent("euclidean", 2, 16), "gaussian", n_clusters=3,
                     merge_rule="ridge")


def test_the_default_merge_rule_is_graph_on_counts_and_elbo_elsewhere() -> None:
    """`CGMVAE` on counts merges by ``"graph"`` (with its vetoes) unless told otherwise; on
    data that are not counts (no expression veto there) by ``"elbo"``."""
    from geovae.datasets import simulate_counts
    from geovae.datasets.blobs import make_blobs
    from geovae.models import CGMVAE

    counts = simulate_counts(n_cells=60, n_genes=20, n_types=3, n_conditions=1, seed=0)
    model = CGMVAE(counts, seed=0, n_hidden=8)
    assert model.module.merge_rule == "graph"
    assert model.config.model_options["merge_rule"] == "graph"  # recorded with the run
    chosen = CGMVAE(counts, seed=0, n_hidden=8, model_options={"merge_rule": "elbo"})
    assert chosen.module.merge_rule == "elbo"
    blobs = make_blobs(n_cells=60, n_features=5, n_blobs=3, n_conditions=1, seed=0)
    assert CGMVAE(blobs, seed=0, n_hidden=8).module.merge_rule == "elbo"


@pytest.mark.slow
def test_the_demp_rule_finds_the_number_of_count_types_at_three_times_it() -> None:
    """Issue 24, item 2: the issue-type simulation (`bench_clusters.py`'s ``issue2k``: 2,000
    cells x 500 genes, 5 types, 3 conditions shifting 20% of the genes, seed 0), K = 15,
    default epochs. With ``merge_rule="demp"`` each type is one component (measured ARI
    0.997, 5 of 15 in use); with ``"elbo"`` (the default on counts until the expression veto)
    each type's lobe of shallow cells stays a component of its own (ARI 0.826, 9 in use, the
    same fit in the ``bench_clusters.py --posthoc-rules`` record): the -ELBO rule fails this
    test. Minutes."""
    from helpers import mixture_on_counts

    from geovae.datasets import simulate_counts

    adata = simulate_counts(n_cells=2000, n_genes=500, n_types=5, n_conditions=3,
                            condition_prob=0.2, seed=0)
    ari, used = mixture_on_counts(adata, k=15, seed=0, epochs=None, merge_rule="demp")
    print(f"issue2k, K = 15: ARI {ari:.3f}, {used} in use")
    assert abs(used - 5) <= 1, f"{used} components in use for 5 types"
    assert ari >= 0.95
