"""The ``"lobes"`` merge rule (`geovae.modules.merging`, issue 24): DEMP tells that two
components overlap, the cells' depth-normalised expression tells a type's lobe of shallow
cells (same profile, smaller libraries: merge) from a weak second type (other marker genes at
equal depth: keep). Two close types, each a core and a lobe of shallow cells, fitted exactly:
``"demp"`` merges all four components into one, ``"lobes"`` into the two types."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch.distributions import Normal

from geovae.modules import merging
from geovae.modules.deletion import mixture_probs
from geovae.modules.merging import (
    depth_normalised,
    expression_differs,
    feature_effect,
    feature_t,
    greedy_overlap_merges,
)

#: latent: type t's core at (0, GAP t), its lobe SHIFT further on the first axis; the types
#: GAP apart (DEMP between them > 0.1: close); counts: markers x FOLD in type 1, lobe cells'
#: library LOBE_DEPTH of the core's
GAP, SHIFT, LOBE_SD, FOLD, MARKERS, GENES = 2.0, 1.5, 0.6, 4.0, 5, 40
CORE_DEPTH, LOBE_DEPTH = 2000.0, 400.0


def _two_weak_types(n: int = 2000, seed: int = 0, conditions: int = 1
                    ) -> tuple[torch.Tensor, ...]:
    """(z, type, logits of the exact posterior over the 4 Gaussians (core, lobe of type 0,
    core, lobe of type 1), their means and sds per cell, Poisson counts (n, GENES), one-hot
    conditions (n, conditions); condition c multiplies the first 10 genes by 1 + c)."""
    gen = torch.Generator().manual_seed(seed)
    loc = torch.tensor([[0.0, 0.0], [SHIFT, 0.0], [0.0, GAP], [SHIFT, GAP]], dtype=torch.float64)
    sd = torch.tensor([[1.0, 1.0], [LOBE_SD, 1.0]] * 2, dtype=torch.float64)
    weights = torch.tensor([0.35, 0.15, 0.35, 0.15], dtype=torch.float64)
    comp = torch.multinomial(weights, n, True, generator=gen)
    z = loc[comp] + sd[comp] * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    logits = Normal(loc, sd).log_prob(z[:, None, :]).sum(-1) + weights.log()
    rho = torch.rand(2, GENES, generator=gen, dtype=torch.float64) + 0.5
    rho[1, :MARKERS] *= FOLD
    condition = torch.randint(conditions, (n,), generator=gen)
    shift = torch.ones(conditions, GENES, dtype=torch.float64)
    shift[:, :10] += torch.arange(conditions, dtype=torch.float64)[:, None]
    rate = rho[comp // 2] * shift[condition]
    rate = rate / rate.sum(1, keepdim=True)
    depth = torch.where(comp % 2 == 0, CORE_DEPTH, LOBE_DEPTH)
    x = torch.poisson(rate * depth[:, None], generator=gen)
    batch = torch.nn.functional.one_hot(condition, conditions).to(torch.float64)
    return (z, comp // 2, logits, loc.expand(n, -1, -1).clone(), sd.expand(n, -1, -1).clone(),
            x, batch)


def test_lobes_merges_each_types_shallow_lobe_but_not_the_weak_types() -> None:
    """DEMP alone folds the two close types into one component; ``"lobes"`` merges each
    lobe into its core and keeps the types apart (2 components, ARI 1). Without the depth
    normalisation every lobe differs from its core in every gene, and without the veto the
    rule is DEMP: either way this fails."""
    z, _, logits, loc, sd, x, batch = _two_weak_types()
    active = torch.ones(4, dtype=torch.bool)
    demp, _ = greedy_overlap_merges(z, logits, loc, sd, active, "demp")
    assert int(demp.sum()) == 1  # the types are close: DEMP merges them
    y = depth_normalised(x, batch, counts=True)
    new, merges = greedy_overlap_merges(z, logits, loc, sd, active, "lobes", profiles=y)
    assert sorted((i, j) for i, j, _, _ in merges) == [(0, 1), (2, 3)]
    assert int(new.sum()) == 2
    # each cell's cluster is its most probable Gaussian's type (the types overlap in z)
    pred = mixture_probs(logits, new, None).argmax(1)
    nearest = mixture_probs(logits, active, None).argmax(1) // 2
    assert adjusted_rand_score(nearest.numpy(), pred.numpy()) > 0.95


def test_the_conditions_mean_is_taken_out_before_the_t_test() -> None:
    """Lobe cells from one condition, core cells from another (a condition doubles 10
    genes): on x / library alone the lobe differs from its core in those genes; with each
    condition's mean moved to the common mean it does not, and the two types still do."""
    z, _, logits, loc, sd, x, batch = _two_weak_types(n=3000, seed=1, conditions=2)
    hard = mixture_probs(logits, torch.ones(4, dtype=torch.bool), None).argmax(1)
    confounded = (hard % 2 == 1) == (batch[:, 1] == 1)  # lobes in condition 1, cores in 0
    z, hard, x, batch = z[confounded], hard[confounded], x[confounded], batch[confounded]
    assert expression_differs(depth_normalised(x, None, counts=True), hard, 0, 1)
    y = depth_normalised(x, batch, counts=True)
    assert not expression_differs(y, hard, 0, 1)
    assert not expression_differs(y, hard, 2, 3)
    assert expression_differs(y, hard, 0, 2)
    assert int((feature_t(y, hard, 0, 2).abs() > 6).sum()) >= MARKERS - 1


@pytest.mark.parametrize(("rule", "match"), [
    ("lobes", r"^rule 'lobes' needs profiles, the cells' depth-normalised expression"),
    ("elbo", r"^rule must be one of modes, demp, lobes \(elbo: greedy_merges\), not 'elbo'$"),
])
def test_a_misused_overlap_rule_is_a_value_error(rule: str, match: str) -> None:
    """``"lobes"`` without ``profiles`` was a TypeError deep in the veto, once a pair passed
    DEMP (as here: every cell's argmax is component 0); ``"elbo"`` ran as ``"demp"``."""
    n, k, d = 20, 3, 2
    with pytest.raises(ValueError, match=match):
        greedy_overlap_merges(torch.randn(n, d, dtype=torch.float64),
                              torch.zeros(n, k, dtype=torch.float64),
                              torch.zeros(n, k, d, dtype=torch.float64),
                              torch.ones(n, k, d, dtype=torch.float64),
                              torch.ones(k, dtype=torch.bool), rule)


def _shifted(n: int, shift: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, hard): n cells in each of components 0 and 1, GENES standard normal features, the
    first MARKERS shifted by ``shift`` sd in component 1."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(2 * n, GENES, generator=gen, dtype=torch.float64)
    hard = (torch.arange(2 * n) >= n).long()
    y[hard == 1, :MARKERS] += shift
    return y, hard


@pytest.mark.parametrize(("n", "shift", "two_types"), [(50, 1.0, True), (400, 0.25, False)])
def test_the_veto_does_not_flip_when_the_cells_are_replicated(
        n: int, shift: float, two_types: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review F22: both components' cells replicated 10x leave the effect size as it is
    (population variances) and multiply |t| by about sqrt(10). A 1-sd difference in MARKERS
    features between 50 and 50 cells (|t| about 5) is two types at either size; a 0.25-sd
    one between 400 and 400 (|t| about 3.5) is one type at either size. The earlier veto
    (|t| > 6 in >= 3 features, no effect size) merged both pairs at their own size and kept
    both apart replicated: under it this test fails."""
    y, hard = _shifted(n, shift)
    y10, hard10 = y.repeat(10, 1), hard.repeat(10)
    assert torch.allclose(feature_effect(y, hard, 0, 1)[0], feature_effect(y10, hard10, 0, 1)[0])
    assert expression_differs(y, hard, 0, 1) is two_types
    assert expression_differs(y10, hard10, 0, 1) is two_types
    for name, value in (("LOBE_EFFECT", 0.0), ("LOBE_T", 6.0), ("LOBE_FEATURES", 3)):
        monkeypatch.setattr(merging, name, value)  # the earlier veto: it flips
    assert not expression_differs(y, hard, 0, 1)
    assert expression_differs(y10, hard10, 0, 1)
