"""Dropout masks drawn ahead of the step (`geovae.nn.layers.AheadDropout`, `draw_masks`,
`VAEModule.draw_ahead`): torch's dropout distribution, used once, and what a training step
of the VAE and the c*GMΔVAE applies."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy import stats

from geovae.data.batch import Batch
from geovae.modules.cgmvae import CGMVAEModule
from geovae.modules.vae import DROPOUT_MASKS, VAEModule
from geovae.nn.latents import make_latent
from geovae.nn.layers import AheadDropout, draw_masks


def test_masks_keep_units_at_one_minus_p_scaled_as_torch_does() -> None:
    """Each unit kept with probability 1 - p (binomial test on 64,000 units per layer),
    independently of the layer, and kept units scaled by 1 / (1 - p); p = 0 gives None."""
    drops = [AheadDropout(0.3), AheadDropout(0.0), AheadDropout(0.1), AheadDropout(0.3)]
    masks = draw_masks(drops, 500, 128, torch.Generator().manual_seed(0))
    assert masks[1] is None
    for d, m in zip(drops, masks, strict=True):
        if m is None:
            continue
        assert m.shape == (500, 128)
        kept = m > 0
        assert torch.allclose(m[kept], torch.full_like(m[kept], 1 / (1 - d.p)))
        assert stats.binomtest(int(kept.sum()), kept.numel(), 1 - d.p).pvalue > 1e-3
    # the layers' masks are independent draws: a unit kept by two layers at the product of
    # their keep rates (one uniform thresholded per layer would give the smaller rate, and
    # two layers of the same p the same mask)
    for i, j in ((0, 2), (0, 3), (2, 3)):
        both = (masks[i] > 0) & (masks[j] > 0)
        rate = (1 - drops[i].p) * (1 - drops[j].p)
        assert stats.binomtest(int(both.sum()), both.numel(), rate).pvalue > 1e-3, (i, j)


def test_a_waiting_mask_is_used_once_and_only_where_it_fits() -> None:
    d = AheadDropout(0.5).train()
    x = torch.ones(4, 6)
    mask = torch.tensor([[0.0, 2.0] * 3] * 4)
    d.waiting = mask
    assert torch.equal(d(x), mask)
    assert d.waiting is None  # used once
    d.waiting = torch.ones(3, 6)  # another shape: torch's own dropout, the mask dropped
    torch.manual_seed(0)
    out = d(x)
    assert set(out.unique().tolist()) <= {0.0, 2.0} and d.waiting is None
    d.eval()
    d.waiting = mask
    assert torch.equal(d(x), x)  # eval: no dropout


def _batch(module: VAEModule, n: int = 32, seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.full((n, module.n_features), 2.0), generator=gen)
    c = torch.nn.functional.one_hot(torch.randint(0, 2, (n,), generator=gen), 2).float()
    return Batch(x, c, torch.full((n,), -1))


@pytest.mark.parametrize("kind", ["vae", "cgmvae"])
def test_a_training_step_applies_the_masks_drawn_ahead(kind: str) -> None:
    """Masks of ones attached by `draw_ahead` make the training step's loss the loss without
    dropout, bit for bit under the same global seed (so the trunks used them, and drew no
    dropout of their own from the global RNG); masks from the same generator seed give the
    same loss, from another seed another."""
    torch.manual_seed(0)
    latent = make_latent("euclidean", 4, 16)
    if kind == "vae":
        module = VAEModule(30, latent, "nb", n_covariates=2, n_hidden=16, dropout=0.2)
    else:
        module = CGMVAEModule(30, latent, "nb", 2, n_hidden=16, dropout=0.2, n_clusters=3,
                              w_dim=2)
        ahead = {id(d) for d in module._ahead_dropouts()}
        for d in module.modules():  # its other trunks (classifier, prior) draw their own
            if isinstance(d, AheadDropout) and id(d) not in ahead:
                d.p = 0.0

    def loss(batch: Batch, dropout: bool = True) -> torch.Tensor:
        m = copy.deepcopy(module).train()  # a training step may update state (gamma)
        for d in m.modules():
            if isinstance(d, AheadDropout) and not dropout:
                d.p = 0.0
        torch.manual_seed(1)
        return m.loss(m.prepare(batch)).loss.detach()

    batch = module.draw_ahead(_batch(module), torch.Generator().manual_seed(3))
    masks = getattr(batch.x, DROPOUT_MASKS)
    assert len(masks) == 2 and all(m.shape == (32, 16) for m in masks)
    ones = _batch(module)
    setattr(ones.x, DROPOUT_MASKS, [torch.ones(32, 16) for _ in masks])
    assert torch.equal(loss(ones), loss(_batch(module), dropout=False))
    assert not torch.equal(loss(_batch(module)), loss(_batch(module), dropout=False))
    same = module.draw_ahead(_batch(module), torch.Generator().manual_seed(3))
    other = module.draw_ahead(_batch(module), torch.Generator().manual_seed(4))
    assert torch.equal(loss(batch), loss(same))
    assert not torch.equal(loss(batch), loss(other))
