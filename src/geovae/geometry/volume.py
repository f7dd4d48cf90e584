"""Decoder volume element: log sqrt(det(J^T J)) of a map f from a latent to data space.

For f: R^d -> R^D, D(z) = sqrt(det(J(z)^T J(z))) is how much f stretches a small latent
volume at z (seed 000: x = 2^(-1/4) (z1^2/sqrt2, z2^2/sqrt2, z1 z2) has D = z1^2 + z2^2).
On a curved latent (S^d, H^d in ambient coordinates) J is taken on the tangent space: with an
orthonormal basis B of T_z M (``Manifold.tangent_basis``), J = d/dc f(z + B c) at c = 0, which
equals the Jacobian of f o exp_z o B at 0 (exp_z has differential identity at 0), so the
volume is relative to the Riemannian volume of the latent.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jacfwd, jacrev, vmap


def log_volume(
    f: Callable[[Tensor], Tensor],
    z: Tensor,
    tangent_basis: Tensor | Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """log sqrt(det(J^T J)) at each row of z (n, m); returns (n,).

    ``f`` maps one latent row (m,) to an output of any shape (flattened to D); it must work
    under ``torch.func.vmap`` (no batch statistics, no in-place ops on its input).
    ``tangent_basis``: None (flat latent, basis = identity), a tensor (n, m, d) of orthonormal
    columns, or a callable z -> such a tensor (e.g. ``Sphere().tangent_basis``).
    Forward mode is used when d < D (d JVPs), reverse mode otherwise.
    """
    if callable(tangent_basis):
        tangent_basis = tangent_basis(z)
    if tangent_basis is None:
        tangent_basis = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device).expand(
            z.shape[0], -1, -1)
    d = tangent_basis.shape[-1]
    out_size = f(z[0]).numel()

    def chart(c: Tensor, z_i: Tensor, b_i: Tensor) -> Tensor:
        return f(z_i + b_i @ c).reshape(-1)

    jac = jacfwd(chart) if d < out_size else jacrev(chart)
    c0 = torch.zeros(z.shape[0], d, dtype=z.dtype, device=z.device)
    j = vmap(jac)(c0, z, tangent_basis)  # (n, D, d)
    return 0.5 * torch.linalg.slogdet(j.transpose(-1, -2) @ j).logabsdet
