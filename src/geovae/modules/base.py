"""What every torch module of geovae shares: the minibatch it reads and the loss it returns.

Modules are pure torch (no AnnData): a `Batch` in, a `LossOutput` out. The AnnData-facing
model classes in `geovae.models` bind a module class and build it from a validated config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from geovae.data.batch import Batch

__all__ = ["Batch", "LossOutput"]


@dataclass
class LossOutput:
    """-ELBO for a minibatch: the weighted mean ``loss`` and its per-cell terms."""

    loss: torch.Tensor
    reconstruction: torch.Tensor  # (B,) -log p(x|z)
    kl: torch.Tensor  # (B,) KL terms summed
    terms: dict[str, torch.Tensor] = field(default_factory=dict)  # (B,) each, for logging

    @property
    def negative_elbo(self) -> torch.Tensor:
        """Per-cell -ELBO at full KL weight, (B,)."""
        return self.reconstruction + self.kl
