"""bfloat16 autocast of the hidden layers (``precision="bf16"``, the default on CUDA GPUs that
support it): the trunks' matrix products run in bf16, everything after them in float32, and
the loss and its gradient stay what float32 gives. Checked on the CPU, where torch's autocast
runs the same bf16 code path."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch
from helpers import PBMC, run_cli

from geovae.data.batch import Batch
from geovae.errors import OptionError
from geovae.models import CGMVAE, GeoVAE
from geovae.nn.layers import Trunk, low_precision, mlp
from geovae.training.trainer import TrainSettings


def test_trunk_runs_in_bf16_and_returns_float32():
    torch.manual_seed(0)
    trunk = mlp(20, 16, 2, 0.0)
    seen: list[torch.dtype] = []
    trunk[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = torch.randn(8, 20)
    ref = trunk(x)
    with low_precision(trunk, "bf16"):
        low = trunk(x)
    after = trunk(x)
    assert seen == [torch.float32, torch.bfloat16, torch.float32]
    assert low.dtype == torch.float32 and after.dtype == torch.float32
    torch.testing.assert_close(after, ref)  # back to float32 afterwards
    assert 0 < (low - ref).abs().max() < 0.05  # bf16 rounding, nothing more
    with pytest.raises(ValueError, match="unknown precision"):
        with low_precision(trunk, "fp8"):
            pass


def _pbmc_batch(model: GeoVAE, n: int = 256) -> Batch:
    return model.source().take(torch.arange(n))


@pytest.mark.parametrize("cls, latent", [(GeoVAE, "euclidean"), (GeoVAE, "sphere"),
                                         (CGMVAE, "euclidean")])
def test_bf16_loss_and_gradient_match_float32(cls, latent):
    """Same weights, same latent noise: the -ELBO within 0.5% and the gradient pointing the
    same way (cosine > 0.99) under bf16 as in float32; every trunk was autocast."""
    adata = ad.read_h5ad(PBMC)
    model = cls(adata, latent=latent, seed=0)
    module = model.module.train()
    batch = _pbmc_batch(model)
    assert any(isinstance(m, Trunk) for m in module.modules())

    def loss_and_grad(precision: str) -> tuple[float, torch.Tensor]:
        module.zero_grad()
        torch.manual_seed(1)
        with low_precision(module, precision):
            out = module.loss(batch, kl_weight=1.0)
        out.loss.backward()
        grad = torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])
        return float(out.loss), grad

    module.eval()  # dropout off, so both passes see the same network
    loss32, g32 = loss_and_grad("32")
    loss16, g16 = loss_and_grad("bf16")
    assert abs(loss16 - loss32) / abs(loss32) < 5e-3
    assert loss16 != loss32  # bf16 really ran
    cos = torch.nn.functional.cosine_similarity(g16, g32, dim=0)
    assert cos > 0.99, float(cos)


def test_training_in_bf16_reaches_the_float32_loss():
    """A short fit under bf16 ends at a validation -ELBO within 2% of float32's."""
    adata = ad.read_h5ad(PBMC)
    losses = {}
    for precision in ("32", "bf16"):
        model = GeoVAE(adata, seed=0)
        hist = model.train(epochs=15, progress=False, device="cpu", precision=precision)
        assert hist.precision == precision and model.train_params["precision"] == precision
        losses[precision] = hist.validation[hist.best_epoch]
    assert losses["bf16"] != losses["32"]  # the training steps really ran in bf16
    assert abs(losses["bf16"] - losses["32"]) / abs(losses["32"]) < 0.02, losses


def test_precision_auto_is_float32_on_the_cpu_and_bad_values_are_named():
    assert TrainSettings(epochs=1).resolved_precision(torch.device("cpu")) == "32"
    with pytest.raises(OptionError, match="unknown .*'fp8'"):
        TrainSettings(epochs=1, precision="fp8").check()


def test_cli_precision(tmp_path):
    out = tmp_path / "o.h5ad"
    bad = run_cli("fit", PBMC, "--out", out, "--precision", "fp8", "--epochs", "1")
    assert bad.exit_code == 2
    assert len(bad.stderr.strip().splitlines()) == 1  # refused before the data are read
    assert "--precision" in bad.stderr and "fp8" in bad.stderr and "bf16" in bad.stderr
    assert not out.exists()
    ok = run_cli("fit", PBMC, "--out", out, "--precision", "bf16", "--epochs", "2",
                 "--no-umap", "--quiet")
    assert ok.exit_code == 0, ok.stderr
    params = ad.read_h5ad(out).uns["geovae"]["params"]
    assert params["precision"] == "bf16"
    assert np.isfinite(ad.read_h5ad(out).obsm["X_geovae"]).all()


def test_precision_auto_on_cuda_follows_the_compute_capability(monkeypatch):
    """auto = bf16 only where the GPU has native bf16 matrix units (capability >= 8.0)."""
    settings = TrainSettings(epochs=1)
    for capability, expected in (((7, 0), "32"), ((7, 5), "32"), ((8, 0), "bf16"),
                                 ((9, 0), "bf16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d, c=capability: c)
        assert settings.resolved_precision(torch.device("cuda")) == expected
    assert TrainSettings(epochs=1, precision="32").resolved_precision(
        torch.device("cuda")) == "32"
