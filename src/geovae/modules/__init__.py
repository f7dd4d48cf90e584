"""Torch modules (no AnnData): the VAE and the c*GMΔVAE, each a `Batch` -> `LossOutput`."""

from geovae.modules.base import BaseModule, Batch, LossOutput
from geovae.modules.cgmvae import CGMVAEModule
from geovae.modules.vae import VAEModule

__all__ = ["BaseModule", "Batch", "CGMVAEModule", "LossOutput", "VAEModule"]
