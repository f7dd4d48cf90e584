"""Small building blocks shared by the modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

#: ``TrainSettings.precision`` values and the autocast dtype each one gives the trunks
PRECISIONS: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16}


class Trunk(nn.Sequential):
    """Linear -> LayerNorm -> ReLU -> Dropout blocks: the hidden layers of every network.

    Under `low_precision` the blocks run in torch's autocast (their matrix products in
    bfloat16) and the output is returned in float32, so every head, distribution, likelihood
    and loss term after it is computed in float32 as usual. Outside it, plain float32.
    """

    autocast_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is None:
            return super().forward(x)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            h = super().forward(x)
        return h.float()


def mlp(n_in: int, n_hidden: int, n_layers: int, dropout: float) -> Trunk:
    """A `Trunk` of ``n_layers`` blocks (per-cell, so eval is batch-independent)."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(n_in if i == 0 else n_hidden, n_hidden), nn.LayerNorm(n_hidden),
                   nn.ReLU(), nn.Dropout(dropout)]
    return Trunk(*layers)


@contextmanager
def low_precision(module: nn.Module, precision: str) -> Iterator[None]:
    """Run ``module``'s trunks with the autocast dtype of ``precision`` (`PRECISIONS`) inside
    the block; float32 again afterwards."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of "
                         + ", ".join(PRECISIONS))
    trunks = [m for m in module.modules() if isinstance(m, Trunk)]
    for t in trunks:
        t.autocast_dtype = PRECISIONS[precision]
    try:
        yield
    finally:
        for t in trunks:
            t.autocast_dtype = None
