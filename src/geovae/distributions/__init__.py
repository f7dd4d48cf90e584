"""Distributions on the latent manifolds, with a common rsample / log_prob / entropy contract.

KLs registered with ``torch.distributions.kl``: (VonMisesFisher, HypersphericalUniform) and
(PowerSpherical, HypersphericalUniform), both closed form. The hyperbolic KL has no closed form
and is deliberately not registered: use Monte Carlo, log q(z) - log p(z).
"""

from .bessel import bessel_ratio, log_iv
from .hyperspherical_uniform import HypersphericalUniform, log_sphere_area
from .power_spherical import PowerSpherical
from .von_mises_fisher import VonMisesFisher
from .wrapped_normal import WrappedNormal

__all__ = [
    "HypersphericalUniform",
    "PowerSpherical",
    "VonMisesFisher",
    "WrappedNormal",
    "bessel_ratio",
    "log_iv",
    "log_sphere_area",
]
