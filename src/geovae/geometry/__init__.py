"""Pure tensor geometry: the latent manifolds and the decoder's volume element."""

from geovae.geometry.manifolds import (
    Euclidean,
    Lorentz,
    Manifold,
    Sphere,
    get_manifold,
    pairwise_dist,
)
from geovae.geometry.volume import log_volume

__all__ = ["Euclidean", "Lorentz", "Manifold", "Sphere", "get_manifold", "log_volume",
           "pairwise_dist"]
