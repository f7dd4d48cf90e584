"""Training machinery: minibatch slicing, KL warm-up, early stopping, likelihoods, seeds."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats as st
import torch
from helpers import PBMC

import geovae
from geovae.data import InMemorySource, Prepared
from geovae.models import GeoVAE
from geovae.nn.likelihoods import NegativeBinomial, log_nb_positive, log_zinb_positive
from geovae.training import default_epochs, evaluate
from geovae.training.parts import kl_weight, split_indices


def _source(X: object, batch: np.ndarray, n_categories: list[int]) -> InMemorySource:
    prepared = Prepared(X=X, batch=batch, labels=np.full(batch.shape[0], -1))
    return InMemorySource(prepared, n_categories, torch.device("cpu"))


def test_csr_minibatch_equals_dense_rows() -> None:
    rng = np.random.default_rng(0)
    X = sp.random(300, 50, density=0.1, format="csr", random_state=1, dtype=np.float32)
    X[5] = 0  # an empty row
    data = _source(X, np.zeros((300, 0), int), [])
    idx = torch.as_tensor(rng.choice(300, 64, replace=False))
    idx[0] = 5
    np.testing.assert_array_equal(data.rows(idx).numpy(), X[idx.numpy()].toarray())
    dense = _source(X.toarray(), np.zeros((300, 0), int), [])
    np.testing.assert_array_equal(dense.rows(idx).numpy(), X[idx.numpy()].toarray())


def test_covariates_are_one_hot_blocks() -> None:
    batch = np.array([[0, 2], [1, 0], [1, 1]])
    data = _source(np.ones((3, 2), np.float32), batch, [2, 3])
    c = data.covariates(torch.arange(3)).numpy()
    np.testing.assert_array_equal(c, [[1, 0, 0, 0, 1], [0, 1, 1, 0, 0], [0, 1, 0, 1, 0]])


def test_kl_warmup_reaches_full_weight_before_the_end() -> None:
    warm = 100
    weights = [kl_weight(s, warm) for s in range(200)]
    assert weights[0] == pytest.approx(0.01) and weights[98] < 1.0
    assert weights[99] == 1.0 and all(w == 1.0 for w in weights[99:])
    assert all(b >= a for a, b in zip(weights, weights[1:], strict=False))
    a = ad.read_h5ad(PBMC)[:200].copy()
    m = GeoVAE(a, seed=0)
    hist = m.train(epochs=8, progress=False)
    assert 0 < hist.warmup_steps < hist.total_steps


def test_default_epochs_scale_with_cells() -> None:
    assert default_epochs(700) == 400
    assert default_epochs(40_000) == 200
    assert default_epochs(10**7) == 20


def test_early_stopping_restores_best_weights() -> None:
    a = ad.read_h5ad(PBMC)
    m = GeoVAE(a, seed=3)
    # a high learning rate makes validation loss rise after its best epoch
    hist = m.train(epochs=60, lr=2e-2, patience=5, progress=False)
    assert hist.best_epoch >= 0
    assert hist.best_epoch < len(hist.validation) - 1  # stopped (or ended) after the best
    data = m.source()
    _, val_idx, _ = split_indices(a.n_obs, 0.1, torch.Generator().manual_seed(3), 0.05)
    restored = evaluate(m.module, data, val_idx, 128)
    assert restored == pytest.approx(hist.validation[hist.best_epoch], rel=1e-5)
    assert restored < hist.validation[-1]


def test_nb_log_prob_matches_scipy() -> None:
    x = torch.arange(0, 60, dtype=torch.float64)
    mu, theta = torch.tensor(7.5, dtype=torch.float64), torch.tensor(2.3, dtype=torch.float64)
    ours = log_nb_positive(x, mu, theta).numpy()
    ref = st.nbinom.logpmf(x.numpy(), theta.item(), theta.item() / (theta.item() + mu.item()))
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-8)


def test_zinb_pmf_sums_to_one_and_inflates_zero() -> None:
    x = torch.arange(0, 400, dtype=torch.float64)
    mu, theta = torch.tensor(12.0, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
    logit = torch.tensor(-0.4, dtype=torch.float64)
    p = log_zinb_positive(x, mu, theta, logit).exp()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
    pi = torch.sigmoid(logit)
    nb0 = log_nb_positive(x[:1], mu, theta).exp()
    assert p[0].item() == pytest.approx((pi + (1 - pi) * nb0).item(), rel=1e-10)


def test_nb_sampler_moments() -> None:
    torch.manual_seed(0)
    mu, theta = torch.full((200_000,), 5.0), torch.full((200_000,), 1.5)
    s = NegativeBinomial(mu, theta).sample()
    # NB mean 5, variance mu + mu^2/theta = 21.67; standard errors ~0.01 and ~0.2
    assert s.mean().item() == pytest.approx(5.0, abs=0.06)
    assert s.var().item() == pytest.approx(5 + 25 / 1.5, rel=0.05)


def test_same_seed_same_latent_different_seed_differs() -> None:
    a = ad.read_h5ad(PBMC)[:300].copy()
    runs = []
    for seed in (7, 7, 8):
        b = a.copy()
        geovae.fit(b, epochs=4, seed=seed, progress=False)
        runs.append(b.obsm["X_geovae"])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - runs[2]).max() > 1e-3


def test_optimizer_is_fused_adamw_with_the_for_loop_update():
    """make_optimizer uses torch's fused AdamW on the CPU; its steps are AdamW's (the for-loop
    implementation, same settings) to float rounding, and a zero gradient with no weight decay
    leaves a weight exactly unchanged (what transfer's frozen reference weights rely on)."""
    from geovae.training.parts import make_optimizer

    torch.manual_seed(0)
    a = torch.nn.Linear(7, 5)
    b = torch.nn.Linear(7, 5)
    b.load_state_dict(a.state_dict())
    opt_a = make_optimizer(a, 1e-2, 1e-3)
    assert opt_a.defaults["fused"] is True
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=1e-3, foreach=False)
    x = torch.randn(16, 7)
    for _ in range(5):
        for m, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            (m(x) ** 2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    frozen = torch.nn.Linear(3, 2)
    opt = make_optimizer(frozen, 1e-2, 0.0)
    before = frozen.weight.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        frozen(torch.randn(4, 3)).sum().backward()
        frozen.weight.grad.zero_()
        opt.step()
    assert torch.equal(frozen.weight, before)



def test_optimizer_stepper_is_optimizer_step_bit_for_bit():
    """`optimizer_stepper`'s direct fused AdamW kernels leave every parameter and every state
    tensor exactly where ``optimizer.step()`` does: two learning-rate groups, weight decay,
    and a step where one parameter has no gradient (it falls back to ``step``)."""
    from geovae.training.parts import optimizer_stepper

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.Linear(5, 3)) for _ in "ab"]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.AdamW([{"params": n[0].parameters(), "lr": 1e-2},
                               {"params": n[1].parameters(), "lr": 3e-3}],
                              lr=1e-2, weight_decay=1e-3, fused=True) for n in nets]
    step_a, step_b = opts[0].step, optimizer_stepper(opts[1])
    assert step_b != opts[1].step  # the direct path, not torch's own step
    x = torch.randn(16, 7)
    for i in range(6):
        for net, step in ((nets[0], step_a), (nets[1], step_b)):
            for p in net.parameters():
                p.grad = None
            (net(x) ** 2).sum().backward()
            if i == 3:  # a parameter without a gradient in this step
                net[1].bias.grad = None
            step()
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(p, q)
        for k, v in opts[0].state[p].items():
            assert torch.equal(v, opts[1].state[q][k]), k
    plain = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), foreach=False)
    assert optimizer_stepper(plain) == plain.step  # not fused: torch's own step


def test_optimizer_stepper_updates_a_feature_major_weight_through_its_transpose():
    """A weight stored transposed (`feature_major`, the sparse first layer's) is handed to the
    fused kernel as its contiguous transpose, sharing its memory: the same parameters and
    moments as torch's own step, bit for bit, and as a contiguous copy of the weight (up to
    the products' rounding)."""
    from geovae.nn.sparse_linear import feature_major
    from geovae.training.parts import _kernel_views, optimizer_stepper

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(9, 6), torch.nn.Linear(6, 2)) for _ in "abc"]
    for n in nets[1:]:
        n.load_state_dict(nets[0].state_dict())
    feature_major(nets[1][0])
    feature_major(nets[2][0])
    assert not nets[1][0].weight.is_contiguous()
    opts = [torch.optim.AdamW(n.parameters(), lr=1e-2, weight_decay=1e-3, fused=True)
            for n in nets]
    steps = [opts[0].step, opts[1].step, optimizer_stepper(opts[2])]
    x = torch.randn(16, 9)

    def train(which: list[int], layout_of_grad=None) -> None:
        for i in which:
            for p in nets[i].parameters():
                p.grad = None
            (nets[i](x) ** 2).sum().backward()
            if layout_of_grad is not None:
                nets[i][0].weight.grad = layout_of_grad(nets[i][0].weight.grad)
            steps[i]()

    def same(i: int, j: int, exact: bool = True) -> None:
        # a transposed weight's products round differently: the contiguous net up to rounding
        equal = torch.equal if exact else lambda a, b: torch.allclose(a, b, atol=1e-6)
        for p, q in zip(nets[i].parameters(), nets[j].parameters(), strict=True):
            assert equal(p, q)
            for k, v in opts[i].state[p].items():
                assert equal(v, opts[j].state[q][k]), k

    for _ in range(4):
        train([0, 1, 2])
    w = nets[2][0].weight
    views = _kernel_views(w, opts[2].state[w]["exp_avg"], opts[2].state[w]["exp_avg_sq"])
    assert all(v.is_contiguous() for v in views) and views[0].data_ptr() == w.data_ptr()
    same(0, 1, exact=False)
    same(1, 2)
    # a gradient assigned by hand in the row-major layout (torch's own kernel would mix the
    # layouts here): the stepper still updates the weight as the contiguous copy's
    train([0, 2], lambda g: g.contiguous())
    same(0, 2, exact=False)


def test_optimizer_stepper_steps_past_an_empty_param_group():
    """A param group without parameters (torch's own step skips it; its fused kernels raise
    on empty lists) leaves the direct path bit for bit where ``optimizer.step()`` is."""
    from geovae.training.parts import optimizer_stepper

    torch.manual_seed(0)
    nets = [torch.nn.Linear(3, 2) for _ in "ab"]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.AdamW([{"params": list(n.parameters())}, {"params": [], "lr": 1e-3}],
                              lr=1e-2, fused=True) for n in nets]
    steps = [opts[0].step, optimizer_stepper(opts[1])]
    assert steps[1] != opts[1].step
    x = torch.randn(5, 3)
    for _ in range(4):  # the first step builds the state, the later ones take the kernels
        for net, step in zip(nets, steps, strict=True):
            for p in net.parameters():
                p.grad = None
            (net(x) ** 2).sum().backward()
            step()
    for p, q in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(p, q)


def test_map_batches_fills_every_cell_in_order():
    """One preallocated result, filled batch by batch: the same rows, in order, as the
    function applied to every cell at once (a ragged last batch included)."""
    from geovae.data.sources import map_batches

    X = sp.random(1030, 12, density=0.3, format="csr", random_state=3, dtype=np.float32)
    data = _source(X, np.zeros((1030, 0), int), [])
    out = map_batches(data, lambda b: b.x[:, :3] * 2, batch_size=256)
    assert out.shape == (1030, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.as_tensor(X.toarray()[:, :3]) * 2)
    labels = map_batches(data, lambda b: b.labels, batch_size=100)
    assert labels.dtype == torch.long and labels.shape == (1030,)


def test_map_batches_refuses_rows_that_do_not_match_the_batch():
    from geovae.data.sources import map_batches

    X = sp.random(300, 5, density=0.5, format="csr", random_state=4, dtype=np.float32)
    data = _source(X, np.zeros((300, 0), int), [])
    with pytest.raises(ValueError, match="gave shape"):
        map_batches(data, lambda b: b.x[:-1], batch_size=100)


def test_validation_batches_grow_within_a_memory_bound_and_keep_the_loss(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`eval_batch_size`: 1,024 cells at 2,000 features, never below the training batch or
    256, and no larger than `EVAL_BLOCK_ENTRIES` allows; the summed validation -ELBO is the
    same in 1,024-cell batches as in 256-cell ones up to float rounding (per-cell terms, the
    same seeded latent draws cell by cell)."""
    from geovae.training import trainer

    assert trainer.eval_batch_size(128, 2000) == 1024
    assert trainer.eval_batch_size(128, 20000) == 256
    assert trainer.eval_batch_size(2048, 2000) == 2048
    assert trainer.eval_batch_size(128, 4096) == trainer.EVAL_BLOCK_ENTRIES // 4096
    rng = np.random.default_rng(0)
    a = ad.AnnData(sp.csr_matrix(rng.poisson(0.5, (1500, 300)).astype(np.float32)))
    m = GeoVAE(a, seed=0)
    source, idx = m.source(a), torch.arange(1500)
    big = trainer.evaluate_sum(m.module, source, idx, 128)  # 1,024-cell batches
    wide = trainer.evaluate_sum(m.module, source, idx, 1500)  # one batch
    monkeypatch.setattr(trainer, "EVAL_BLOCK_ENTRIES", 1)
    assert trainer.eval_batch_size(128, 300) == 256
    small = trainer.evaluate_sum(m.module, source, idx, 128)  # 256-cell batches
    assert not torch.equal(big, small)  # other batches: other rounding, same loss
    assert torch.allclose(big, small, rtol=1e-6) and torch.allclose(big, wide, rtol=1e-6)
