"""The pure-torch VAE: encoder, pluggable latent, decoder, likelihood, and the -ELBO.

No AnnData here: `VAEModule` works on tensors (counts or features ``x``, one-hot covariates
``c``) so it can be tested and reused on its own. `geovae.model.GeoVAE` wraps it for AnnData.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.distributions import Distribution

from geovae.latents import Latent, make_latent
from geovae.likelihoods import make_likelihood


def mlp(n_in: int, n_hidden: int, n_layers: int, dropout: float) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU -> Dropout blocks (per-cell, so eval is batch-independent)."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(n_in if i == 0 else n_hidden, n_hidden), nn.LayerNorm(n_hidden),
                   nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


@dataclass
class LossOutput:
    """-ELBO for a minibatch: the weighted mean ``loss`` and its per-cell terms."""

    loss: torch.Tensor
    reconstruction: torch.Tensor  # (B,) -log p(x|z)
    kl: torch.Tensor  # (B,) KL terms summed
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # (B,) each, for logging

    def elbo_per_cell(self) -> torch.Tensor:
        return -(self.reconstruction + self.kl)


class VAEModule(nn.Module):
    """VAE with a swappable latent geometry and likelihood, conditional on covariates."""

    def __init__(
        self,
        n_input: int,
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
        self.n_input, self.n_covariates = n_input, n_covariates
        self.latent = latent
        self.likelihood = make_likelihood(likelihood, n_hidden, n_input)
        self.encoder = mlp(n_input + n_covariates, n_hidden, n_layers, dropout)
        self.decoder = mlp(latent.embed_dim + n_covariates, n_hidden, n_layers, dropout)
        self.register_buffer("center", center if center is not None else torch.zeros(n_input))
        self.register_buffer("scale", scale if scale is not None else torch.ones(n_input))

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

    def encode(self, x_in: torch.Tensor, c: torch.Tensor | None) -> Distribution:
        h = self.encoder(x_in if c is None else torch.cat([x_in, c], dim=-1))
        return self.latent(h)

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


def build_module(config: dict, n_input: int, n_covariates: int,
                 center: torch.Tensor | None = None, scale: torch.Tensor | None = None
                 ) -> nn.Module:
    """Construct the module a model config describes (``config['model']`` picks the class)."""
    latent = make_latent(config["latent"], config["latent_dim"], config["n_hidden"],
                         **config.get("latent_options", {}))
    if config.get("model", "vae") != "vae":
        from geovae import mixture  # the c*GMΔVAE module

        return mixture.build(config, latent, n_input, n_covariates, center, scale)
    return VAEModule(n_input, latent, config["likelihood"], n_covariates, config["n_hidden"],
                     config["n_layers"], config["dropout"], center, scale)
