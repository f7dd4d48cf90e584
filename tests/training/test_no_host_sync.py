"""The training loop reads values back to the host once per epoch, never once per step.

A read of a device tensor on the host (``.item()``, ``float(t)``, ``if t:``, ``.tolist()``,
``.numpy()``) makes the CPU wait for the GPU; inside the step loop that stalls the GPU every
minibatch. On the CPU we cannot see a wait, but we can count the Python-level reads: the
count must depend on the number of epochs, not on the number of steps per epoch.

Not counted: ``torch.optim``'s own ``.item()`` on its step counters, which live on the CPU
even when the parameters are on a GPU (``capturable=False``), so they do not wait for it.
Counted apart: ``torch.distributions``' argument validation (``validate_args``, on by default),
which checks every parameter of every distribution built in a step with one ``bool()`` each.
Not seen: synchronisations inside C++ kernels (e.g. ``repeat_interleave`` without
``output_size`` in the sparse minibatch path); ``torch.cuda.set_sync_debug_mode`` on a GPU
finds those.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import anndata as ad
import numpy as np
import pytest
import torch

from geovae.models import GeoVAE
from geovae.training.trainer import Trainer, TrainSettings

READS = ("item", "__float__", "__bool__", "__int__", "__index__", "tolist", "numpy")
BATCH = 16


VALIDATION = "torch.distributions"


@contextmanager
def count_host_reads() -> Iterator[Counter]:
    """Count calls of the host-reading Tensor methods while inside the block, by method name;
    those made by torch.distributions' argument validation as ``(VALIDATION, name)``."""
    counts: Counter = Counter()
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name: str, fn):  # noqa: ANN001, ANN202 - a plain method wrapper
        def counted(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith(VALIDATION):
                counts[VALIDATION, name] += 1
            elif not caller.startswith("torch.optim"):
                counts[name] += 1
            return fn(self, *args, **kwargs)

        return counted

    try:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, wrap(name, fn))
        yield counts
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)


def _model(steps_per_epoch: int) -> GeoVAE:
    """A small Euclidean NB VAE on dense counts with ``steps_per_epoch`` full minibatches
    (10% of the cells are held out for validation)."""
    n = round(steps_per_epoch * BATCH / 0.9) + 1
    rng = np.random.default_rng(0)
    X = rng.poisson(2.0, size=(n, 30)).astype(np.float32)
    m = GeoVAE(ad.AnnData(X), latent="euclidean", latent_dim=4, n_hidden=32, seed=0)
    n_val = round(0.1 * n)
    assert (n - n_val) // BATCH == steps_per_epoch
    return m


def _reads(steps_per_epoch: int, epochs: int) -> Counter:
    m = _model(steps_per_epoch)
    settings = TrainSettings(epochs=epochs, batch_size=BATCH, progress=False, patience=10**6)
    trainer = Trainer(m.module, m.source(), settings)
    with count_host_reads() as counts:
        hist = trainer.fit()
    assert len(hist.train) == epochs and hist.total_steps == epochs * steps_per_epoch
    return counts


def test_counter_sees_reads_and_restores_the_methods() -> None:
    before = {name: getattr(torch.Tensor, name) for name in READS}
    t = torch.ones(())
    with count_host_reads() as counts:
        float(t), t.item(), bool(t), int(t), t.tolist(), t.numpy()  # noqa: B018
    assert counts == Counter({"__float__": 1, "item": 1, "__bool__": 1, "__int__": 1,
                              "tolist": 1, "numpy": 1})
    assert {name: getattr(torch.Tensor, name) for name in READS} == before


def _ours(counts: Counter) -> Counter:
    return Counter({k: v for k, v in counts.items() if not isinstance(k, tuple)})


def _validation(counts: Counter) -> Counter:
    return Counter({k: v for k, v in counts.items() if isinstance(k, tuple)})


def test_host_reads_grow_with_epochs_not_with_steps() -> None:
    few = _ours(_reads(steps_per_epoch=10, epochs=3))
    many = _ours(_reads(steps_per_epoch=40, epochs=3))
    assert many == few, (
        f"host reads depend on steps per epoch: {dict(few)} with 10 steps/epoch, "
        f"{dict(many)} with 40 (a float()/.item()/bool() inside the step loop?)")
    longer = _ours(_reads(steps_per_epoch=10, epochs=6))
    per_epoch = sum(few.values()) / 3
    # a few reads per epoch (train loss, per-term means, validation loss); far below 1 a step
    assert sum(longer.values()) == pytest.approx(2 * sum(few.values()), abs=2)
    assert 1 <= per_epoch < 10


def test_no_distribution_argument_validation_in_the_step_loop() -> None:
    few = _validation(_reads(steps_per_epoch=10, epochs=3))
    many = _validation(_reads(steps_per_epoch=40, epochs=3))
    assert many == few, f"argument validation: {dict(few)} (10 steps), {dict(many)} (40 steps)"


@pytest.mark.parametrize("phase", ["pretrain", "hold", "mixture"])
@pytest.mark.parametrize("labelled", [False, True])
def test_cgmvae_step_reads_nothing_back(phase: str, labelled: bool) -> None:
    """A c*GMΔVAE training step (loss, backward) in each warm-start phase, with and without
    labelled cells: no host read at all (argument validation included)."""
    from geovae.models import CGMVAE
    from geovae.modules.mixture_start import set_phase

    rng = np.random.default_rng(0)
    a = ad.AnnData(rng.poisson(1.0, size=(120, 30)).astype(np.float32))
    a.obs["batch"] = np.where(np.arange(120) % 2 == 0, "a", "b")
    a.obs["type"] = np.where(np.arange(120) % 3 == 0, "x", "y")
    if labelled:
        a.obs.loc[a.obs_names[::4], "type"] = np.nan  # some cells unlabelled
    m = CGMVAE(a, batch_key="batch", label_key="type" if labelled else None, latent_dim=4,
               n_hidden=16, seed=0, model_options={"n_clusters": 3})
    module, source = m.module, m.source()
    module.train()
    set_phase(module, phase)
    batch = module.prepare(source.take(torch.arange(64)))
    assert bool((batch.labels >= 0).any()) is labelled
    with count_host_reads() as counts:
        out = module.loss(batch, kl_weight=1.0)
        out.loss.backward()
    assert counts == Counter(), f"host reads in a {phase} step: {dict(counts)}"
