"""The c*GMΔVAE's mixture components p(z|w,y=k,c) on each latent manifold (the only
geometry-specific piece of the mixture prior), and the Dirichlet concentrations of q(d|z)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, Distribution, Independent, Normal

from geovae.distributions import PowerSpherical, VonMisesFisher, WrappedNormal
from geovae.nn.latents import EuclideanLatent, HyperbolicLatent, Latent, SphereLatent


def concentration(raw: torch.Tensor) -> torch.Tensor:
    """Dirichlet concentrations from unconstrained outputs: softplus + 1e-3, at most 1e3."""
    return (F.softplus(raw) + 1e-3).clamp(max=1e3)


#: latents the mixture prior p(z|w,y) is defined for (see `component_prior`)
SUPPORTED_LATENTS = (EuclideanLatent, SphereLatent, HyperbolicLatent)


def component_params(latent: Latent) -> int:
    """Unconstrained outputs per mixture component that `component_prior` reads."""
    if isinstance(latent, SphereLatent):
        return latent.embed_dim + 1  # direction (d + 1) and concentration
    return 2 * latent.intrinsic_dim  # location (or tangent vector at the origin) and scale


#: distributions built every step skip torch's argument checks (each a host read)
normal_ = functools.partial(Normal, validate_args=False)
dirichlet_ = functools.partial(Dirichlet, validate_args=False)


def component_prior(latent: Latent, out: torch.Tensor) -> Distribution:
    """p(z|w,y=k,c) on z's manifold from unconstrained ``out`` (..., component_params).

    Batch shape ``out.shape[:-1]``; event = z's ``embed_dim`` coordinates, so ``log_prob``
    takes points as `Latent.rsample` returns them.
    """
    if isinstance(latent, SphereLatent):
        loc = F.normalize(out[..., :-1], dim=-1)
        kappa = (F.softplus(out[..., -1]) + 1).clamp(max=latent.max_kappa)
        return (VonMisesFisher if latent.posterior == "vmf" else PowerSpherical)(loc, kappa)
    a, raw = out.chunk(2, dim=-1)
    scale = F.softplus(raw) + 1e-3
    if isinstance(latent, HyperbolicLatent):
        return WrappedNormal(latent.manifold.expmap0(latent.manifold.tangent0(a)), scale)
    # no argument checks: each would read a value back from the device every step
    return Independent(normal_(a, scale), 1, validate_args=False)


def global_weight_terms(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(E_q(pi)[log pi] (K,), KL(q(pi) || p(pi)) / N) of a c*GMΔVAE's global weights (q(pi) =
    Dir(gamma), p(pi) = Dir(alpha)), the same numbers as computing them: kept while gamma,
    alpha and N are the same tensors at the same versions (no in-place change since), so the
    steps that hold the weights (the warm start's hold, ``hold_weights``) compute them once."""
    from torch.distributions import kl_divergence

    tensors = (module.gamma, module.alpha, module.n_obs)
    # built in inference mode: no version counter to key a kept copy on (review F35)
    key = (None if any(t.is_inference() for t in tensors)
           else [(t, t._version) for t in tensors])
    cached = module.__dict__.get("_global_weight_terms")
    if key is not None and cached is not None and all(
            a is b and v == w for (a, v), (b, w) in zip(cached[0], key, strict=True)):
        return cached[1]
    terms = (module.expected_log_weights(),
             kl_divergence(dirichlet_(module.gamma), dirichlet_(module.alpha)) / module.n_obs)
    # inference tensors cannot join a graph later
    if key is not None and not torch.is_inference_mode_enabled():
        module.__dict__["_global_weight_terms"] = (key, terms)
    return terms
