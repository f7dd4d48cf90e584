"""Opt-in ``torch.compile`` of the training step (``--compile``): the compiled forward gives the
eager loss and gradient, and the trainer really compiles when asked (and only then)."""

from __future__ import annotations

import anndata as ad
import pytest
import torch
import torch._dynamo
from helpers import PBMC

from geovae.models import GeoVAE


@pytest.mark.slow
def test_compiled_loss_matches_eager_and_the_trainer_compiles_only_when_asked():
    adata = ad.read_h5ad(PBMC)
    model = GeoVAE(adata, seed=0, batch_key=None)
    module = model.module.eval()  # no dropout: both passes see the same network
    batch = model.source().take(torch.arange(200))

    def loss_and_grad(fn) -> tuple[torch.Tensor, torch.Tensor]:
        module.zero_grad()
        torch.manual_seed(3)
        out = fn(batch, 1.0)
        out.loss.backward()
        return out.loss.detach(), torch.cat([p.grad.flatten() for p in module.parameters()
                                             if p.grad is not None])

    torch._dynamo.reset()
    eager = loss_and_grad(module.loss)
    compiled = loss_and_grad(torch.compile(module.loss))
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(compiled[1], eager[1], rtol=1e-3, atol=1e-4)

    counters = torch._dynamo.utils.counters
    torch._dynamo.reset()
    counters.clear()
    GeoVAE(adata, seed=0).train(epochs=1, progress=False, device="cpu")
    assert counters["stats"].get("unique_graphs", 0) == 0
    hist = GeoVAE(adata, seed=0).train(epochs=2, progress=False, device="cpu",
                                       torch_compile=True)
    assert counters["stats"].get("unique_graphs", 0) > 0
    assert len(hist.train) == 2 and all(map(torch.isfinite, torch.tensor(hist.train)))
