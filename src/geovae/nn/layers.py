"""Small building blocks shared by the modules."""

from __future__ import annotations

from torch import nn


def mlp(n_in: int, n_hidden: int, n_layers: int, dropout: float) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU -> Dropout blocks (per-cell, so eval is batch-independent)."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(n_in if i == 0 else n_hidden, n_hidden), nn.LayerNorm(n_hidden),
                   nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)
