"""AnnData-facing models: `GeoVAE` (VAE, any latent geometry) and `CGMVAE` (c*GMΔVAE)."""

from geovae.models.base import GeoVAE
from geovae.models.cgmvae import CGMVAE
from geovae.models.config import ModelConfig
from geovae.models.registry import MODELS, model_class

__all__ = ["CGMVAE", "MODELS", "GeoVAE", "ModelConfig", "model_class"]
