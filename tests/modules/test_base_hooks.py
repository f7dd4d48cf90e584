"""`BaseModule` declares the hooks the trainer and query mapping call: a module that overrides
none of them trains (the base's no-ops), and an override is called once, on the kept weights."""

from __future__ import annotations

import torch
from torch import nn

from geovae.datasets import make_blobs
from geovae.models import GeoVAE
from geovae.modules import BaseModule, Batch, LossOutput
from geovae.training import Trainer, TrainSettings


class Linear(BaseModule):
    """A linear-Gaussian autoencoder that declares only `loss`."""

    def __init__(self, n_features: int):
        super().__init__()
        self.enc, self.dec = nn.Linear(n_features, 2), nn.Linear(2, n_features)

    def loss(self, batch: Batch, kl_weight: float = 1.0) -> LossOutput:
        rec = ((self.dec(self.enc(batch.x)) - batch.x) ** 2).sum(-1)
        return LossOutput(rec.mean(), rec, torch.zeros_like(rec))


class Counting(Linear):
    def __init__(self, n_features: int):
        super().__init__(n_features)
        self.calls: list[int] = []

    def after_training(self, source, idx, seed) -> None:
        self.calls.append(len(idx))


def _source():
    a = make_blobs(n_cells=200, n_features=8, n_blobs=2, n_conditions=1, seed=0)
    return GeoVAE(a, likelihood="gaussian").source()


def test_a_module_without_hooks_trains() -> None:
    module = Linear(8)
    before = module.enc.weight.detach().clone()
    settings = TrainSettings(epochs=5, lr=0.02, progress=False)
    history = Trainer(module, _source(), settings).fit()
    assert len(history.train) == 5 and history.train[-1] < 0.9 * history.train[0]
    assert not torch.equal(module.enc.weight, before)
    module.freeze_for_query("all")  # the base's no-op: nothing changes, nothing raises
    assert all(p.requires_grad for p in module.parameters())


def test_after_training_is_called_once_with_the_training_cells() -> None:
    module = Counting(8)
    source = _source()
    Trainer(module, source, TrainSettings(epochs=2, progress=False)).fit()
    assert module.calls == [source.n_obs - round(0.1 * source.n_obs)]  # 10% held out
