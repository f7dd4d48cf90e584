"""Torch modules (no AnnData): the VAE and the c*GMΔVAE, each a `Batch` -> `LossOutput`."""

from geovae.modules.base import Batch, LossOutput
from geovae.modules.cgmvae import CGMVAEModule
from geovae.modules.vae import VAEModule

__all__ = ["Batch", "CGMVAEModule", "LossOutput", "VAEModule"]
