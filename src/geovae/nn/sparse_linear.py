"""The encoder's first layer on sparse counts: ``[x, c] @ W.T + b`` from ``x``'s non-zero
entries only, forward and backward (the CPU training step's largest product).

A count block is ~90 % zeros, yet a dense first layer multiplies every entry: two
(cells x features x hidden) products a step (the output, and the weight's gradient). Here both
are sums over the non-zeros, each one call of torch's ``embedding_bag`` (weighted sum mode):

    out[b]      = sum_{entries (b, g)} x_bg W[:, g]      + W_c c_b + bias    (bags = cells)
    grad W[:, g] = sum_{entries (b, g)} x_bg grad_out[b]                     (bags = features)

The feature-major order of the entries (`SparseRows.of`) depends on the data only, so it is
built beside the batch (`geovae.modules.vae.VAEModule.prepare`, on the batch-building
thread). The sums run in another order than a dense product's: the same numbers up to float
rounding, not bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


class SparseRows(NamedTuple):
    """A (cells x features) block's non-zeros, cell-major and feature-major."""

    rows: torch.Tensor  #: (nnz,) int64 cell of each entry, cell-major
    cols: torch.Tensor  #: (nnz,) int64 feature of each entry, cell-major
    row_starts: torch.Tensor  #: (cells,) int64 first entry of each cell
    values: torch.Tensor  #: (nnz,) the entries, cell-major
    rows_by_feature: torch.Tensor  #: (nnz,) int64 cell of each entry, feature-major
    feature_starts: torch.Tensor  #: (features,) int64 first entry of each feature
    values_by_feature: torch.Tensor  #: (nnz,) the entries, feature-major
    n_features: int

    @classmethod
    def of(cls, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
           row_ends: torch.Tensor, n_features: int) -> SparseRows:
        """From cell-major entries (``rows``, ``cols``, ``values``; ``row_ends`` the cumulative
        row lengths, as `geovae.nn.nb_sum.NonZeros`)."""
        order = feature_major_order(cols, n_features)
        per_feature = torch.bincount(cols, minlength=n_features)
        return cls(rows, cols, row_ends - torch.diff(row_ends, prepend=row_ends.new_zeros(1)),
                   values, rows.index_select(0, order),
                   torch.cumsum(per_feature, 0) - per_feature, values.index_select(0, order),
                   n_features)

    def dense(self, c: torch.Tensor | None = None) -> torch.Tensor:
        """The block as a dense (cells x features) tensor, with ``c``'s columns after it."""
        width = self.n_features + (0 if c is None else c.shape[1])
        out = self.values.new_zeros(len(self.row_starts), width)
        out.view(-1).scatter_(0, self.rows * width + self.cols, self.values)
        if c is not None:
            out[:, self.n_features:] = c
        return out


def feature_major_order(cols: torch.Tensor, n_features: int) -> torch.Tensor:
    """The stable order that sorts ``cols`` (on the CPU with fewer than 2**15 features: numpy's
    radix sort of 16-bit keys, several times faster than a comparison sort)."""
    if cols.device.type == "cpu" and n_features < 2**15:
        return torch.from_numpy(np.argsort(cols.to(torch.int16).numpy(), kind="stable"))
    return torch.sort(cols, stable=True).indices


def _bag_sums(index: torch.Tensor, starts: torch.Tensor, weights: torch.Tensor,
              table: torch.Tensor) -> torch.Tensor:
    """Row ``i`` of the result: sum over the entries j of bag i of weights[j] * table[index[j]]."""
    return F.embedding_bag(index, table, starts, mode="sum", per_sample_weights=weights)


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: torch.Tensor, bias: torch.Tensor | None, c: torch.Tensor | None,
                sp: SparseRows) -> torch.Tensor:
        g = sp.n_features
        ctx.feature_major = weight.stride(0) == 1  # its transpose needs no copy
        out = _bag_sums(sp.cols, sp.row_starts, sp.values.to(weight.dtype),
                        weight[:, :g].t().contiguous())
        if c is not None:
            out.addmm_(c, weight[:, g:].t())
        if bias is not None:
            out += bias
        ctx.sp = sp
        ctx.save_for_backward(weight, c)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        sp: SparseRows = ctx.sp
        weight, c = ctx.saved_tensors
        grad_weight = grad_bias = grad_c = None
        if ctx.needs_input_grad[0]:
            grad_x = _bag_sums(sp.rows_by_feature, sp.feature_starts,
                               sp.values_by_feature.to(grad.dtype), grad.contiguous())
            grad_t = grad_x if c is None else torch.cat([grad_x, c.t() @ grad], 0)
            # in the weight's own layout where it is feature-major (`feature_major`)
            grad_weight = grad_t.t() if ctx.feature_major else grad_t.t().contiguous()
        if ctx.needs_input_grad[1]:
            grad_bias = grad.sum(0)
        if ctx.needs_input_grad[2]:  # covariates that carry a gradient (not one-hot data)
            grad_c = grad @ weight[:, sp.n_features:]
        return grad_weight, grad_bias, grad_c, None


def feature_major(layer: torch.nn.Linear) -> torch.nn.Linear:
    """``layer`` with its weight stored feature-major (its transpose contiguous): the same
    values, shape and state dict, but `sparse_linear` reads and writes it without a transposed
    copy (two 1 MB strided copies a step at 2,000 features). Dense products take it as well."""
    layer.weight = torch.nn.Parameter(layer.weight.detach().t().contiguous().t(),
                                      requires_grad=layer.weight.requires_grad)
    return layer


def sparse_linear(sp: SparseRows, c: torch.Tensor | None, layer: torch.nn.Linear
                  ) -> torch.Tensor:
    """``layer([x, c])`` where ``x`` is the block ``sp`` holds (``c`` the covariates, or None
    when ``layer`` reads ``x`` alone); gradients for the layer's weight and bias, and for ``c``
    where it has one."""
    width = sp.n_features + (0 if c is None else c.shape[1])
    if layer.in_features != width:
        raise ValueError(f"sparse_linear: the layer reads {layer.in_features} columns, the "
                         f"block and covariates have {width}")
    return _SparseLinear.apply(layer.weight, layer.bias, c, sp)
