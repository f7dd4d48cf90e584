"""A sparse source's blocks carry their non-zeros' positions, and the NB likelihood computed
from them is bit for bit the one computed by scanning the block."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from geovae.data.prepare import Prepared
from geovae.data.sources import InMemorySource
from geovae.nn.likelihoods import NONZERO_POSITIONS, log_nb_positive


def source_of(X: sp.spmatrix) -> InMemorySource:
    n = X.shape[0]
    return InMemorySource(Prepared(X, np.zeros((n, 1), np.int64), np.full(n, -1)), [1],
                          torch.device("cpu"))


def counts(n: int = 300, genes: int = 40, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.poisson(0.15, size=(n, genes)).astype(np.float32)
    return sp.csr_matrix(dense)


def test_positions_are_the_nonzero_scan() -> None:
    src = source_of(counts())
    idx = torch.randperm(300, generator=torch.Generator().manual_seed(1))[:128]
    x = src.rows(idx)
    known = getattr(x, NONZERO_POSITIONS)
    assert torch.equal(known, torch.nonzero(x.reshape(-1)).squeeze(1))


def test_no_positions_where_the_rows_do_not_give_them() -> None:
    X = counts()
    with_zero = X.copy()
    with_zero.data[0] = 0.0  # an explicit zero
    unsorted = X.copy()
    row = np.flatnonzero(np.diff(unsorted.indptr) >= 2)[0]  # a row with two entries
    a = unsorted.indptr[row]
    unsorted.indices[[a, a + 1]] = unsorted.indices[[a + 1, a]]
    unsorted.data[[a, a + 1]] = unsorted.data[[a + 1, a]]
    unsorted.has_sorted_indices = False
    for bad in (with_zero, unsorted):
        x = source_of(bad).rows(torch.arange(300))
        assert not hasattr(x, NONZERO_POSITIONS)
    assert not hasattr(source_of(X.toarray()).rows(torch.arange(5)), NONZERO_POSITIONS)


def test_likelihood_and_gradients_bit_identical() -> None:
    x = source_of(counts(seed=3)).rows(torch.arange(128))
    assert hasattr(x, NONZERO_POSITIONS)
    g = torch.Generator().manual_seed(0)
    mu0 = torch.rand(128, 40, generator=g) * 3 + 0.01
    th0 = torch.rand(40, generator=g) * 2 + 0.1

    def value_and_grads(block: torch.Tensor) -> list[torch.Tensor]:
        mu, th = mu0.clone().requires_grad_(), th0.clone().requires_grad_()
        out = log_nb_positive(block, mu, th)
        (out * torch.linspace(0.5, 1.5, out.numel()).view_as(out)).sum().backward()
        return [out.detach(), mu.grad, th.grad]

    scanned = x.clone()  # a plain tensor: the likelihood scans it
    assert not hasattr(scanned, NONZERO_POSITIONS)
    for a, b in zip(value_and_grads(x), value_and_grads(scanned), strict=True):
        assert torch.equal(a, b)
