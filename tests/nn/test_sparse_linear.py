"""The encoder's first layer on sparse counts (`geovae.nn.sparse_linear`): the dense layer's
output and gradients, its own gradients against finite differences, and the training step
actually taking it."""

from __future__ import annotations

import pytest
import torch

from geovae.nn.sparse_linear import SparseRows, feature_major, sparse_linear


def _block(cells: int = 37, features: int = 300, seed: int = 0
           ) -> tuple[torch.Tensor, SparseRows]:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(cells, features, generator=g) < 0.1) * torch.rand(cells, features,
                                                                       generator=g) * 4
    x[3] = 0  # a cell without counts
    x[:, 7] = 0  # a feature without counts
    nz = x.nonzero()
    rows, cols = nz[:, 0], nz[:, 1]
    ends = torch.cumsum(torch.bincount(rows, minlength=cells), 0)
    return x, SparseRows.of(rows, cols, x[rows, cols], ends, features)


@pytest.mark.parametrize("n_cov", [0, 3])
@pytest.mark.parametrize("major", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_output_and_gradients_are_the_dense_layers(n_cov: int, major: bool, bias: bool) -> None:
    x, sp = _block()
    c = None if n_cov == 0 else torch.nn.functional.one_hot(
        torch.arange(len(x)) % n_cov, n_cov).float()
    torch.manual_seed(1)
    dense = torch.nn.Linear(x.shape[1] + n_cov, 16, bias=bias)
    sparse = torch.nn.Linear(x.shape[1] + n_cov, 16, bias=bias)
    sparse.load_state_dict(dense.state_dict())
    if major:
        feature_major(sparse)
        assert sparse.weight.stride(0) == 1 and torch.equal(sparse.weight, dense.weight)
    assert torch.equal(sp.dense(c), x if c is None else torch.cat([x, c], 1))
    grad_out = torch.randn(len(x), 16)
    want = dense(sp.dense(c))
    want.backward(grad_out)
    got = sparse_linear(sp, c, sparse)
    got.backward(grad_out)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse.weight.grad, dense.weight.grad, rtol=1e-5, atol=1e-5)
    assert sparse.weight.grad.stride() == sparse.weight.stride()  # no copy on accumulation
    if bias:
        torch.testing.assert_close(sparse.bias.grad, dense.bias.grad)


def test_gradients_match_finite_differences() -> None:
    x, sp = _block(cells=9, features=20, seed=2)
    sp = sp._replace(values=sp.values.double(), values_by_feature=sp.values_by_feature.double())
    c = torch.eye(3, dtype=torch.float64)[torch.arange(9) % 3]
    layer = feature_major(torch.nn.Linear(23, 5).double())
    fn = sparse_linear.__globals__["_SparseLinear"].apply
    assert torch.autograd.gradcheck(lambda w, b: fn(w, b, c, sp), (layer.weight, layer.bias))
    c_soft = torch.rand(9, 3, dtype=torch.float64, requires_grad=True)  # covariates with a grad
    assert torch.autograd.gradcheck(lambda w, b, cc: fn(w, b, cc, sp),
                                    (layer.weight, layer.bias, c_soft))


def test_a_wrong_width_is_refused() -> None:
    x, sp = _block()
    with pytest.raises(ValueError, match="reads 301 columns"):
        sparse_linear(sp, None, torch.nn.Linear(301, 4))


def test_training_step_takes_the_sparse_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A count model's minibatch on the CPU goes through `sparse_linear` (training and the
    built-ahead `prepare`), and its first layer is stored feature-major."""
    import anndata as ad
    import numpy as np
    import scipy.sparse as sps

    import geovae.nn.sparse_linear as sl
    from geovae.models import GeoVAE

    calls = []
    real = sl._SparseLinear.apply
    monkeypatch.setattr(sl._SparseLinear, "apply", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(0)
    adata = ad.AnnData(sps.csr_matrix(rng.poisson(0.3, (60, 25)).astype(np.float32)))
    model = GeoVAE(adata, seed=0, n_hidden=8)
    assert model.module.encoder[0].weight.stride(0) == 1
    model.train(epochs=1, batch_size=30)
    assert len(calls) >= 2
