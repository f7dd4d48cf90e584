"""Neural-network building blocks: MLPs, latent heads (posterior + prior), likelihood heads,
RealNVP flows. Torch only; no AnnData."""

from geovae.nn.latents import LATENTS, Latent, make_latent
from geovae.nn.layers import mlp
from geovae.nn.likelihoods import LIKELIHOODS, make_likelihood

__all__ = ["LATENTS", "LIKELIHOODS", "Latent", "make_latent", "make_likelihood", "mlp"]
