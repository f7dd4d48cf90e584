"""The pure-torch VAE: encoder, pluggable latent, decoder, likelihood, and the -ELBO.

No AnnData here: `VAEModule` works on tensors (counts or features ``x``, one-hot covariates
``c``) so it can be tested and reused on its own. `geovae.models.GeoVAE` wraps it for AnnData.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution

from geovae.modules.base import Batch, LossOutput
from geovae.nn.latents import Latent, make_latent
from geovae.nn.layers import mlp
from geovae.nn.likelihoods import make_likelihood


class VAEModule(nn.Module):
    """VAE with a swappable latent geometry and likelihood, conditional on covariates."""

    def __init__(
        self,
        n_features: int,
        latent: Latent,
        likelihood: str = "nb",
        n_covariates: int = 0,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        center: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ):
        super().__init__()
        self.n_features, self.n_covariates = n_features, n_covariates
        self.latent = latent
        self.likelihood = make_likelihood(likelihood, n_hidden, n_features)
        self.encoder = mlp(n_features + n_covariates, n_hidden, n_layers, dropout)
        self.decoder = mlp(latent.embed_dim + n_covariates, n_hidden, n_layers, dropout)
        self.register_buffer("center", center if center is not None else torch.zeros(n_features))
        self.register_buffer("scale", scale if scale is not None else torch.ones(n_features))

    @classmethod
    def from_config(cls, config: Any, n_features: int, n_covariates: int,
                    center: torch.Tensor | None = None, scale: torch.Tensor | None = None
                    ) -> VAEModule:
        """Build the module a validated `geovae.models.config.ModelConfig` describes."""
        latent = make_latent(config.latent, config.latent_dim, config.n_hidden,
                             **config.latent_options)
        return cls(n_features, latent, config.likelihood, n_covariates, config.n_hidden,
                   config.n_layers, config.dropout, center, scale, **config.model_options)

    def covariate_layers(self) -> list[tuple[str, int]]:
        """The linear layers the one-hot covariates enter, as (module name, index of the first
        covariate column): what transfer grows when a query brings new categories."""
        return [("encoder.0", self.n_features), ("decoder.0", self.latent.embed_dim)]

    def loss(self, batch: Batch, kl_weight: float = 1.0) -> LossOutput:
        """-ELBO of a `Batch` (what the trainer calls)."""
        return self(batch.x, batch.c, batch.labels, kl_weight=kl_weight)

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (encoder input, reconstruction target, library size) for raw ``x``."""
        kind = self.likelihood.encoder_transform
        library = x.sum(-1, keepdim=True)
        if kind == "log1p":
            return torch.log1p(x), x, library
        if kind == "standardize":
            xs = (x - self.center) / self.scale
            return xs, xs, library
        return x, x, library

    def hidden(self, x_in: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """The encoder's last hidden layer (shared by every posterior head)."""
        return self.encoder(x_in if c is None else torch.cat([x_in, c], dim=-1))

    def encode(self, x_in: torch.Tensor, c: torch.Tensor | None) -> Distribution:
        """q(z|x,c) from the transformed data ``x_in``."""
        return self.latent(self.hidden(x_in, c))

    def decode(self, z: torch.Tensor, c: torch.Tensor | None, library: torch.Tensor
               ) -> Distribution:
        h = self.decoder(z if c is None else torch.cat([z, c], dim=-1))
        return self.likelihood(h, library)

    def decoder_mean(self, z: torch.Tensor, c: torch.Tensor | None = None,
                     library: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Mean of p(x|z) (proportions when ``library`` is 1 for count models)."""
        lib = torch.as_tensor(library, dtype=z.dtype, device=z.device)
        if lib.dim() == 0:
            lib = lib.expand(*z.shape[:-1], 1)
        return self.decode(z, c, lib).mean

    @torch.no_grad()
    def latent_mean(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x_in, _, _ = self.transform(x)
        return self.latent.mean(self.encode(x_in, c))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, kl_weight: float = 1.0) -> LossOutput:
        """-ELBO of the minibatch (``labels`` unused here; the mixture model uses them)."""
        x_in, target, library = self.transform(x)
        q = self.encode(x_in, c)
        z, log_q = self.latent.rsample(q)
        px = self.decode(z, c, library)
        reconstruction = -px.log_prob(target).sum(-1)
        kl = self.latent.kl(q, z, log_q)
        loss = (reconstruction + kl_weight * kl).mean()
        return LossOutput(loss, reconstruction, kl,
                          {"reconstruction": reconstruction, "kl_z": kl})
