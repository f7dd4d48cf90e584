"""Minibatches built on a background thread (`built_ahead`) and the sparse encoder input
(`VAEModule.hidden_of`): the same numbers as building them inline (and the dense input's up
to float rounding), errors still raised."""

from __future__ import annotations

import threading

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from geovae.models import CGMVAE, GeoVAE
from geovae.training.parts import built_ahead
from geovae.training.trainer import Trainer, TrainSettings, evaluate_sum


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "geovae-batches"]


def test_same_items_in_order_and_the_thread_ends() -> None:
    assert list(built_ahead(iter(range(50)))) == list(range(50))
    assert list(built_ahead(iter(range(5)), enabled=False)) == list(range(5))
    it = built_ahead(iter(range(10**6)))
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # the caller stops early (a break, an exception in the step)
    assert not _workers()


def test_builder_runs_elsewhere_and_its_error_reaches_the_caller() -> None:
    seen: list[str] = []

    def items():  # noqa: ANN202
        seen.append(threading.current_thread().name)
        yield 1
        raise ValueError("bad row")

    it = built_ahead(items())
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad row"):
        next(it)
    assert seen == ["geovae-batches"] and not _workers()


def _counts(n: int = 600, genes: int = 40) -> ad.AnnData:
    rng = np.random.default_rng(3)
    X = sp.csr_matrix(rng.poisson(0.3, size=(n, genes)).astype(np.float32))
    a = ad.AnnData(X)
    a.obs["batch"] = np.where(np.arange(n) % 3 == 0, "a", "b")
    return a


@pytest.mark.parametrize("cls", [GeoVAE, CGMVAE])
def test_training_with_and_without_prefetch_is_identical(cls: type) -> None:
    runs = []
    for prefetch in (False, True):
        m = cls(_counts(), batch_key="batch", seed=0, n_hidden=16)
        hist = Trainer(m.module, m.source(), TrainSettings(
            epochs=3, batch_size=32, progress=False, prefetch=prefetch)).fit()
        runs.append((hist.train, hist.validation,
                     [p.detach().clone() for p in m.module.parameters()]))
    (t0, v0, p0), (t1, v1, p1) = runs
    assert t0 == t1 and v0 == v1
    assert all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True))


def test_the_builders_fit_is_the_inline_fit_at_one_thread_fewer() -> None:
    """docs/speed.md: with the builder torch's steps use one thread fewer, so a seeded fit at
    2 threads is bit for bit the inline fit at 1 thread (here 2 threads inline differ)."""
    runs = []
    for threads, prefetch in ((2, True), (1, False), (2, False)):
        torch.set_num_threads(threads)
        m = GeoVAE(_counts(), batch_key="batch", seed=0, n_hidden=64)
        Trainer(m.module, m.source(), TrainSettings(epochs=3, batch_size=128, progress=False,
                                                    prefetch=prefetch)).fit()
        runs.append(torch.cat([p.detach().flatten() for p in m.module.parameters()]))
    if torch.equal(runs[1], runs[2]):  # this machine's products ignore the thread count
        pytest.skip("1 and 2 torch threads give the same numbers here: nothing to tell apart")
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("in_validation", [False, True])
def test_an_interrupted_fit_ends_the_thread_while_its_traceback_is_kept(
        in_validation: bool) -> None:
    """Ctrl-C in a training step or in the validation pass: the batch-building thread ends
    at once, also where the traceback (and so the frame) is kept, as an interactive session
    keeps it (`sys.last_traceback`)."""
    m = GeoVAE(_counts(), batch_key="batch", seed=0, n_hidden=16)
    module, original = m.module, m.module.loss

    def interrupted(batch, kl_weight=1.0):  # noqa: ANN001, ANN202
        if module.training != in_validation:
            raise KeyboardInterrupt
        return original(batch, kl_weight)

    module.loss = interrupted
    kept = None
    try:
        Trainer(module, m.source(), TrainSettings(epochs=2, batch_size=32, progress=False,
                                                  prefetch=True)).fit()
    except KeyboardInterrupt as exc:
        kept = exc.__traceback__
    assert kept is not None and not _workers()


def test_an_error_in_the_validation_pass_leaves_the_module_training() -> None:
    """`evaluate_sum` puts the module in eval mode; an error in a step restores the mode."""
    m = GeoVAE(_counts(), batch_key="batch", seed=0, n_hidden=16)
    module = m.module

    def broken(batch, kl_weight=1.0):  # noqa: ANN001, ANN202
        raise RuntimeError("step failed")

    module.loss = broken
    module.train()
    with pytest.raises(RuntimeError, match="step failed"):
        evaluate_sum(module, m.source(), torch.arange(40), 32)
    assert module.training


def test_prefetch_default_is_cpu_with_two_threads() -> None:
    s = TrainSettings(epochs=1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert not s.resolved_prefetch(torch.device("cpu"))
        torch.set_num_threads(2)
        assert s.resolved_prefetch(torch.device("cpu"))
        assert not s.resolved_prefetch(torch.device("cuda"))
    finally:
        torch.set_num_threads(before)
    assert TrainSettings(epochs=1, prefetch=False).resolved_prefetch(torch.device("cpu")) is False


@pytest.mark.parametrize("prefetch", [False, True])
def test_the_builder_takes_one_of_torchs_threads(prefetch: bool) -> None:
    """With the builder thread on, steps and validation run with one torch thread fewer
    (runnable threads = the cores given); the count is restored after the fit, also when a
    step fails."""
    m = GeoVAE(_counts(), batch_key="batch", seed=0, n_hidden=16)
    module, original = m.module, m.module.loss
    seen: set[tuple[bool, int]] = set()

    def counting(batch, kl_weight=1.0):  # noqa: ANN001, ANN202
        seen.add((module.training, torch.get_num_threads()))
        return original(batch, kl_weight)

    module.loss = counting
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        Trainer(module, m.source(), TrainSettings(epochs=2, batch_size=32, progress=False,
                                                  prefetch=prefetch)).fit()
        assert seen == {(True, 1 if prefetch else 2), (False, 1 if prefetch else 2)}
        assert torch.get_num_threads() == 2

        def broken(batch, kl_weight=1.0):  # noqa: ANN001, ANN202
            raise RuntimeError("step failed")

        module.loss = broken
        with pytest.raises(RuntimeError, match="step failed"):
            Trainer(module, m.source(), TrainSettings(epochs=1, batch_size=32,
                                                      progress=False, prefetch=prefetch)).fit()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_sparse_encoder_input_is_the_dense_one() -> None:
    m = GeoVAE(_counts(genes=300), batch_key="batch", seed=0, n_hidden=16)
    module, source = m.module, m.source()
    module.eval()
    batch = source.take(torch.arange(100))
    assert hasattr(batch.x, "_geovae_nonzeros")  # the sparse path is the one tested
    dense_x = batch.x.clone()  # no non-zero entries attached: transform + cat
    with torch.no_grad():  # up to float rounding: the sparse layer sums in another order
        sparse = module.hidden_of(batch.x, batch.c)
        torch.testing.assert_close(sparse, module.hidden(module.transform(dense_x)[0], batch.c))
        torch.testing.assert_close(sparse, module.hidden_of(dense_x, batch.c))


def test_prepared_batch_gives_the_same_step() -> None:
    m = GeoVAE(_counts(genes=300), batch_key="batch", seed=0, n_hidden=16)
    module, source = m.module, m.source()
    plain = source.take(torch.arange(64))
    prepared = module.prepare(source.take(torch.arange(64)))
    assert hasattr(prepared.x, "_geovae_prepared_input")
    losses = []
    for batch in (plain, prepared):
        torch.manual_seed(1)
        out = module.loss(batch, kl_weight=0.5)
        module.zero_grad()
        out.loss.backward()
        losses.append((out.loss.detach(), [p.grad.clone() for p in module.parameters()]))
    assert torch.equal(losses[0][0], losses[1][0])
    assert all(torch.equal(a, b) for a, b in zip(losses[0][1], losses[1][1], strict=True))
    # a prepared input is used only with the covariates it was made with (other ones: the
    # block's sparse input built inline, as for the unprepared batch)
    flipped = prepared.c.flip(1)
    with torch.no_grad():
        module.eval()
        assert torch.equal(module.hidden_of(prepared.x, flipped),
                           module.hidden_of(plain.x, flipped))
        torch.testing.assert_close(module.hidden_of(prepared.x, flipped), module.hidden(
            module.transform(prepared.x.clone())[0], flipped))


@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipping and not
def test_gradient_clipper_is_torchs_clip_grad_norm(max_norm: float) -> None:
    from torch import nn

    from geovae.training.parts import gradient_clipper

    gen = torch.Generator().manual_seed(0)
    shapes = [(30, 20), (20,), (7, 3), (5,)]

    def params_with_grads() -> list[nn.Parameter]:
        gen.manual_seed(0)
        ps = [nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
        for p in ps[:-1]:  # the last one unused in this step: no gradient
            p.grad = torch.randn(p.shape, generator=gen) * 3
        return ps

    ours, theirs = params_with_grads(), params_with_grads()
    gradient_clipper(ours, max_norm)()
    nn.utils.clip_grad_norm_(theirs, max_norm)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.grad is None) == (b.grad is None)
        assert a.grad is None or torch.equal(a.grad, b.grad)
    if max_norm < 1:
        assert not torch.equal(ours[0].grad, params_with_grads()[0].grad)  # it did clip
