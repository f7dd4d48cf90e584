"""The negative binomial log-likelihood summed over features, computed from a count block's
non-zero entries in one autograd function (the CPU training step's hot spot).

Per cell b (theta per feature g, mu per entry, eps = `_EPS`):

    sum_g theta_g (log(theta_g + eps) - log(theta_g + mu_bg + eps))                 (dense)
    + sum_{x_bg > 0} x (log(mu + eps) - log(theta + mu + eps))
                     + lgamma(x + theta_g) - lgamma(theta_g) - lgamma(x + 1)        (non-zeros)

the same value as ``log_nb_positive(x, mu, theta).sum(-1)`` up to float rounding. Against
autograd through that formula it saves: lgamma(theta) and its digamma once per feature, not
per non-zero; lgamma(x + 1), a data constant, from a table of integer counts
(`log_factorial_table`) instead of per entry; digamma vectorised (`digamma`); no dense
per-entry result to scatter into and sum; a hand-written backward of four dense passes (one
division, one product, two matrix-vector products) instead of autograd's dozen.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

_EPS = 1e-8
#: largest count the lgamma(x + 1) table covers (a 4 MB float32 table); above, lgamma runs
MAX_TABLE_COUNT = 2**20


class NonZeros(NamedTuple):
    """A dense (cells x features) count block's non-zero entries, in row-major order."""

    rows: torch.Tensor  #: (nnz,) int64 row of each entry
    cols: torch.Tensor  #: (nnz,) int64 feature of each entry
    flat: torch.Tensor  #: (nnz,) int64 rows * features + cols
    values: torch.Tensor  #: (nnz,) the counts
    #: (B,) int64 number of entries in rows 0..b (the cumulative row lengths)
    row_ends: torch.Tensor
    #: (nnz,) lgamma(values + 1) where known (a data constant), else None
    log_factorial: torch.Tensor | None = None

    @classmethod
    def of(cls, x: torch.Tensor) -> NonZeros:
        """Scan a dense 2-D block for its non-zeros."""
        flat = torch.nonzero(x.reshape(-1)).squeeze(1)
        width = x.shape[-1]
        rows = flat // width
        ends = torch.cumsum(torch.bincount(rows, minlength=x.shape[0]), 0)
        return cls(rows, flat % width, flat, x.reshape(-1).index_select(0, flat), ends)


def log_factorial_table(data: torch.Tensor) -> torch.Tensor | None:
    """lgamma(k + 1) for k = 0 .. max(data) in ``data``'s dtype, when every value is a
    non-negative integer of at most `MAX_TABLE_COUNT`; else None. ``table[x.long()]`` is then
    bit for bit ``torch.lgamma(x + 1)``."""
    if data.numel() == 0 or not data.is_floating_point():
        return None
    top = float(data.max())
    if not (float(data.min()) >= 0 and top <= MAX_TABLE_COUNT
            and bool((data == torch.floor(data)).all())):
        return None
    return torch.lgamma(torch.arange(int(top) + 1, dtype=data.dtype, device=data.device) + 1)


def digamma(y: torch.Tensor) -> torch.Tensor:
    """psi(y) for y > 0, vectorised: psi(y) = psi(y + 6) - sum_{j<6} 1 / (y + j), with psi(y + 6)
    from its asymptotic series (error < 3e-9 there). Within float32 rounding of
    ``torch.digamma`` (whose CPU kernel is scalar: this is ~4x faster on 70k entries)."""
    r = torch.reciprocal(y)
    z = y + 1
    for _ in range(5):
        r += torch.reciprocal(z)
        z += 1
    w = torch.reciprocal(z)
    w2 = w * w
    series = w2 * (1 / 12 - w2 * (1 / 120 - w2 * (1 / 252)))
    return torch.log(z) - 0.5 * w - series - r


def row_sums(values: torch.Tensor, row_ends: torch.Tensor) -> torch.Tensor:
    """Sums of consecutive runs of ``values`` (row b: entries row_ends[b-1] .. row_ends[b]),
    accumulated in float64 (a running sum: cheaper than a scatter onto few rows)."""
    total = torch.cumsum(values, 0, dtype=torch.float64)
    at_end = torch.cat([total.new_zeros(1), total]).index_select(0, row_ends)
    return torch.diff(at_end, prepend=at_end.new_zeros(1)).to(values.dtype)


def _nb_forward(mu: torch.Tensor, theta: torch.Tensor, library: torch.Tensor | None,
                rows: torch.Tensor, cols: torch.Tensor, flat: torch.Tensor,
                values: torch.Tensor, row_ends: torch.Tensor,
                log_factorial: torch.Tensor | None) -> tuple[torch.Tensor, tuple]:
    """The sum per cell and what `_nb_grads` needs of the forward pass."""
    # with ``library``, ``mu`` holds the proportions: the mean is formed here, and its
    # buffer becomes t (autograd's product would keep its own)
    if library is not None:
        mu = mu * library
    mu_nz = mu.reshape(-1).index_select(0, flat)
    # the dense (B, G) passes write in place where they can (the same numbers, less
    # memory traffic): t = (mu + theta) + eps, d = log(theta + eps) - log(t)
    t = (mu.add_(theta) if library is not None else torch.add(mu, theta)).add_(_EPS)
    log_theta = torch.log(theta + _EPS)
    d = torch.log(t)
    torch.sub(log_theta, d, out=d)
    # theta * d summed over features: a matrix-vector product
    out = torch.mv(d, theta)
    t_nz = t.reshape(-1).index_select(0, flat)
    theta_nz = theta.index_select(0, cols)
    y = values + theta_nz
    lf = torch.lgamma(values + 1) if log_factorial is None else log_factorial
    vals = (values * (torch.log(mu_nz + _EPS) - torch.log(t_nz)) + torch.lgamma(y)
            - torch.lgamma(theta).index_select(0, cols) - lf)
    out += row_sums(vals, row_ends)
    return out, (theta, t, d, mu_nz, t_nz, y, rows, cols, flat, values, library)


def _nb_grads(saved: tuple, grad: torch.Tensor, need_mu: bool, need_theta: bool
              ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients of `_nb_forward`'s sum (weights ``grad`` per cell) for its ``mu`` (the
    proportions where it had a library) and ``theta``, where needed."""
    theta, t, d, mu_nz, t_nz, y, rows, cols, flat, values, library = saved
    g_nz = grad.index_select(0, rows)
    q = theta / t  # theta / (theta + mu + eps), (B, G)
    grad_mu = grad_theta = None
    if need_theta:
        # d/dtheta of theta * d = d + theta / (theta + eps) - theta / t
        grad_theta = (torch.mv(d.t(), grad) - torch.mv(q.t(), grad)
                      + grad.sum() * (theta / (theta + _EPS)))
        grad_theta.scatter_add_(0, cols, g_nz * (digamma(y) - values / t_nz
                                                 - torch.digamma(theta).index_select(0, cols)))
    if need_mu:
        grad_mu = q.mul_((-grad)[:, None])  # q * (-grad), in place: q is not used again
        grad_mu.reshape(-1).scatter_add_(  # faster than index_add_ on the CPU
            0, flat, g_nz * values * (1 / (mu_nz + _EPS) - 1 / t_nz))
        if library is not None:  # the proportions' gradient: autograd's grad * library
            grad_mu.mul_(library)
    return grad_mu, grad_theta


class _NBSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mu: torch.Tensor, theta: torch.Tensor, library: torch.Tensor | None,
                rows: torch.Tensor, cols: torch.Tensor, flat: torch.Tensor,
                values: torch.Tensor, row_ends: torch.Tensor,
                log_factorial: torch.Tensor | None) -> torch.Tensor:
        out, saved = _nb_forward(mu, theta, library, rows, cols, flat, values, row_ends,
                                 log_factorial)
        ctx.save_for_backward(*saved)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_mu, grad_theta = _nb_grads(ctx.saved_tensors, grad, *ctx.needs_input_grad[:2])
        return grad_mu, grad_theta, None, None, None, None, None, None, None


class _NBLogitsSum(torch.autograd.Function):
    """`_NBSum` with the softmax of the logits in front: the proportions and the softmax's
    backward (torch's own kernels, the same bits) in one node instead of two."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, theta: torch.Tensor, library: torch.Tensor,
                rows: torch.Tensor, cols: torch.Tensor, flat: torch.Tensor,
                values: torch.Tensor, row_ends: torch.Tensor,
                log_factorial: torch.Tensor | None) -> torch.Tensor:
        rho = torch.softmax(logits, -1)
        out, saved = _nb_forward(rho, theta, library, rows, cols, flat, values, row_ends,
                                 log_factorial)
        ctx.save_for_backward(rho, *saved)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rho, *saved = ctx.saved_tensors
        grad_rho, grad_theta = _nb_grads(tuple(saved), grad, *ctx.needs_input_grad[:2])
        grad_logits = None if grad_rho is None else torch._softmax_backward_data(
            grad_rho, rho, -1, rho.dtype)
        return grad_logits, grad_theta, None, None, None, None, None, None, None


def nb_log_prob_sum(mu: torch.Tensor, theta: torch.Tensor, nonzeros: NonZeros,
                    library: torch.Tensor | None = None, *, logits: bool = False
                    ) -> torch.Tensor:
    """Per-cell NB log-likelihood, (B,), of the block whose non-zeros are ``nonzeros``; ``mu``
    (B, G), ``theta`` (G,) per feature. Same value as the dense formula summed over features
    up to float rounding; gradients for ``mu`` and ``theta``. With ``library`` (B, 1), data
    without a gradient, ``mu`` holds the proportions and the mean is ``mu * library``: the same
    numbers as passing that product, bit for bit, with one (B, G) buffer fewer each way; with
    ``logits`` too, ``mu`` holds the logits of the proportions (their softmax over features):
    the same numbers as passing that softmax, bit for bit."""
    nz = nonzeros
    log_factorial = None if nz.log_factorial is None else nz.log_factorial.to(mu.dtype)
    fn = _NBLogitsSum if logits else _NBSum
    if logits and library is None:
        raise ValueError("nb_log_prob_sum: logits need the library sizes")
    return fn.apply(mu, theta, library, nz.rows, nz.cols, nz.flat, nz.values.to(mu.dtype),
                    nz.row_ends, log_factorial)
