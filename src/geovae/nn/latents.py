"""Pluggable latent spaces: a posterior head, a prior and their KL, for each geometry.

A `Latent` turns the encoder's last hidden layer into a posterior q(z|x) (any
`torch.distributions.Distribution` with ``rsample`` and ``log_prob``), gives the prior p(z),
and computes KL(q||p) per cell: in closed form where a KL is registered for the pair, by
Monte Carlo (log q(z) - log p(z) at the sampled z) otherwise. The VAE is written once against
this interface; geometries are added by registering a subclass in `LATENTS`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from geovae.distributions import (
    HypersphericalUniform,
    PowerSpherical,
    VonMisesFisher,
    WrappedNormal,
)
from geovae.geometry.manifolds import Euclidean, Lorentz, Manifold, Sphere
from geovae.nn.flows import RealNVP


def standard_normal_kl(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, scale^2) || N(0, 1)) per coordinate: torch's ``kl_divergence`` of two
    `Normal`s term for term (its ``scale / 1`` and ``loc - 0`` are exact), bit for bit, without
    building the standard normal's tensors and distributions."""
    var_ratio = scale.pow(2)
    return 0.5 * (var_ratio + loc.pow(2) - 1 - var_ratio.log())


class Latent(nn.Module):
    """Base class. ``intrinsic_dim`` = manifold dimension d; ``embed_dim`` = coordinates used."""

    geometry: ClassVar[str] = "base"
    #: options a new model stores in its config explicitly (loading reads them back)
    new_options: ClassVar[dict[str, Any]] = {}
    #: options of models saved before these options existed (what those models used)
    legacy_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, dim: int, n_hidden: int):
        super().__init__()
        if dim < 1:
            raise ValueError("latent dimension must be at least 1")
        self.intrinsic_dim = dim
        self.embed_dim = dim
        self.manifold: Manifold = Euclidean()

    @classmethod
    def complete_options(cls, options: dict[str, Any], saved_before: bool = False) -> None:
        """Add the options a new model stores explicitly (`new_options`), or with
        ``saved_before`` those a model saved before they existed used (`legacy_options`)."""
        for name, value in (cls.legacy_options if saved_before else cls.new_options).items():
            options.setdefault(name, value)

    def forward(self, h: torch.Tensor) -> Distribution:
        """Posterior q(z|x) from the encoder's hidden layer ``h``."""
        raise NotImplementedError

    def prior(self, like: torch.Tensor) -> Distribution:
        """Prior p(z) with the device/dtype of ``like``."""
        raise NotImplementedError

    def rsample(self, q: Distribution) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reparameterised sample and, where the KL needs it, log q(z) at that sample."""
        return q.rsample(), None

    def kl(self, q: Distribution, z: torch.Tensor, log_q: torch.Tensor | None) -> torch.Tensor:
        """Per-cell KL(q||p): closed form when registered, else Monte Carlo at ``z``."""
        p = self.prior(z)
        if log_q is None:
            try:
                return kl_divergence(q, p)
            except NotImplementedError:
                log_q = q.log_prob(z)
        return log_q - p.log_prob(z)

    def mean(self, q: Distribution) -> torch.Tensor:
        """Point estimate of z (posterior mean, or mean direction on curved spaces)."""
        return q.mean

    @property
    def decoder_dim(self) -> int:
        """Width of `decoder_features`: what the decoder reads of z."""
        return self.embed_dim

    def decoder_features(self, z: torch.Tensor) -> torch.Tensor:
        """The coordinates of z the decoder reads (default: z's own coordinates)."""
        return z

    def config(self) -> dict:
        """Geometry and parameters, stored in ``uns['geovae']['latent']``."""
        return {"geometry": self.geometry, "dim": self.intrinsic_dim,
                "n_coordinates": self.embed_dim}


class EuclideanLatent(Latent):
    """Diagonal Gaussian posterior and N(0, I) prior on R^d, optionally with RealNVP flows."""

    geometry = "euclidean"

    def __init__(self, dim: int, n_hidden: int, flow: int = 0):
        super().__init__(dim, n_hidden)
        self.head = nn.Linear(n_hidden, 2 * dim)
        self.n_flow = flow
        self.flow = None
        if flow:
            self.flow = RealNVP(dim, flow)

    def forward(self, h: torch.Tensor) -> Distribution:
        loc, raw = self.head(h).chunk(2, dim=-1)
        return Independent(Normal(loc, F.softplus(raw) + 1e-4, validate_args=False), 1,
                           validate_args=False)

    def prior(self, like: torch.Tensor) -> Distribution:
        zeros = torch.zeros(self.intrinsic_dim, device=like.device, dtype=like.dtype)
        return Independent(Normal(zeros, torch.ones_like(zeros), validate_args=False), 1,
                           validate_args=False)

    def kl(self, q: Distribution, z: torch.Tensor, log_q: torch.Tensor | None) -> torch.Tensor:
        """KL(q || N(0, I)) in closed form: torch's ``kl_divergence`` of the two diagonal
        Gaussians, term for term (its ``scale / 1`` and ``loc - 0`` are exact), without
        building the prior and its distributions every step; the same numbers."""
        base = q.base_dist if isinstance(q, Independent) else None
        if (log_q is not None or type(self).prior is not EuclideanLatent.prior
                or not isinstance(base, Normal) or q.reinterpreted_batch_ndims != 1):
            return super().kl(q, z, log_q)
        return standard_normal_kl(base.loc, base.scale).sum(-1)

    def rsample(self, q: Distribution) -> tuple[torch.Tensor, torch.Tensor | None]:
        z0 = q.rsample()
        if self.flow is None:
            return z0, None
        z, logdet = self.flow(z0)
        return z, q.log_prob(z0) - logdet

    def mean(self, q: Distribution) -> torch.Tensor:
        if self.flow is None:
            return q.mean
        return self.flow(q.mean)[0]

    def config(self) -> dict:
        return {**super().config(), "flow_layers": self.n_flow}


class SphereLatent(Latent):
    """vMF or Power Spherical posterior and uniform prior on S^d (d + 1 coordinates)."""

    geometry = "sphere"

    def __init__(self, dim: int, n_hidden: int, posterior: str = "vmf",
                 max_kappa: float = 1e4):
        super().__init__(dim, n_hidden)
        if posterior not in ("vmf", "power-spherical"):
            raise ValueError(f"unknown posterior {posterior!r}: use vmf or power-spherical")
        self.embed_dim = dim + 1
        self.manifold = Sphere()
        self.posterior, self.max_kappa = posterior, max_kappa
        self.head = nn.Linear(n_hidden, dim + 2)  # direction (d + 1) and concentration

    def forward(self, h: torch.Tensor) -> Distribution:
        out = self.head(h)
        loc = F.normalize(out[..., :-1], dim=-1)
        kappa = (F.softplus(out[..., -1]) + 1).clamp(max=self.max_kappa)
        cls = VonMisesFisher if self.posterior == "vmf" else PowerSpherical
        return cls(loc, kappa)

    def prior(self, like: torch.Tensor) -> Distribution:
        return HypersphericalUniform(self.embed_dim, device=like.device, dtype=like.dtype)

    def mean(self, q: Distribution) -> torch.Tensor:
        return q.loc

    def config(self) -> dict:
        return {**super().config(), "posterior": self.posterior}


class HyperbolicLatent(Latent):
    """Wrapped normal posterior and wrapped N(0, I) prior on the hyperboloid H^d (d + 1
    coordinates, Lorentz model); KL by Monte Carlo.

    ``decoder_input``: what the decoder reads of z. ``"tangent"`` (default): log_0(z), z's
    coordinates in the tangent space at the origin (d numbers; geodesic polar coordinates, so
    the decoder sees distances from the origin linearly). ``"lorentz"``: the d + 1 Lorentz
    coordinates (cosh r, sinh r u), which grow exponentially with the radius (geovae <= 0.2.0
    dev; models saved without the option load with it). On the conditional blobs the Lorentz
    input left the latent split by the covariate (same-condition neighbours 0.89-0.99 for the
    plain VAE, 3 seeds) where the tangent input mixes it (0.51-0.60; Euclidean 0.46).
    """

    geometry = "hyperbolic"
    new_options: ClassVar[dict[str, Any]] = {"decoder_input": "tangent"}
    legacy_options: ClassVar[dict[str, Any]] = {"decoder_input": "lorentz"}

    def __init__(self, dim: int, n_hidden: int, decoder_input: str = "tangent"):
        super().__init__(dim, n_hidden)
        if decoder_input not in DECODER_INPUTS:
            raise ValueError(f"unknown decoder_input {decoder_input!r}: use "
                             + " or ".join(DECODER_INPUTS))
        self.embed_dim = dim + 1
        self.decoder_input = decoder_input
        self.manifold = Lorentz()
        self.head = nn.Linear(n_hidden, 2 * dim)  # tangent vector at the origin, log-scale

    def forward(self, h: torch.Tensor) -> Distribution:
        v, raw = self.head(h).chunk(2, dim=-1)
        loc = self.manifold.expmap0(self.manifold.tangent0(v))
        return WrappedNormal(loc, F.softplus(raw) + 1e-4)

    def prior(self, like: torch.Tensor) -> Distribution:
        origin = self.manifold.origin(self.intrinsic_dim, like)
        return WrappedNormal(origin, torch.ones_like(origin[1:]))

    def rsample(self, q: Distribution) -> tuple[torch.Tensor, torch.Tensor | None]:
        return q.rsample_with_log_prob()

    def mean(self, q: Distribution) -> torch.Tensor:
        return q.loc

    @property
    def decoder_dim(self) -> int:
        return self.intrinsic_dim if self.decoder_input == "tangent" else self.embed_dim

    def decoder_features(self, z: torch.Tensor) -> torch.Tensor:
        if self.decoder_input == "tangent":
            return self.manifold.logmap0(z)[..., 1:]
        return z

    def config(self) -> dict:
        return {**super().config(), "decoder_input": self.decoder_input}


#: what a hyperbolic latent's decoder may read (`HyperbolicLatent`)
DECODER_INPUTS = ("tangent", "lorentz")


LATENTS: dict[str, type[Latent]] = {"euclidean": EuclideanLatent, "sphere": SphereLatent,
                                     "hyperbolic": HyperbolicLatent}


def make_latent(geometry: str, dim: int, n_hidden: int, **kwargs: object) -> Latent:
    """Build the latent called ``geometry`` (see `LATENTS`)."""
    if geometry not in LATENTS:
        raise ValueError(f"unknown latent geometry {geometry!r}; choose one of "
                         + ", ".join(LATENTS))
    return LATENTS[geometry](dim, n_hidden, **kwargs)
