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


class AheadDropout(nn.Dropout):
    """`nn.Dropout` that applies a mask drawn ahead of the step (`draw_masks`, on the
    batch-building thread) where one is waiting for an input of its shape, dtype and device,
    and draws its own (torch's dropout, the global RNG) otherwise. The same distribution: each
    unit kept with probability 1 - p and scaled by 1 / (1 - p). A waiting mask is used once."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p)
        self.waiting: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask, self.waiting = self.waiting, None
        if (self.training and mask is not None and mask.shape == x.shape
                and mask.dtype == x.dtype and mask.device == x.device):
            return x * mask
        return super().forward(x)


def draw_masks(dropouts: list[AheadDropout], rows: int, width: int, generator: torch.Generator,
               dtype: torch.dtype = torch.float32) -> list[torch.Tensor | None]:
    """One (rows, width) mask per layer of ``dropouts`` (None where its p is 0): the units it
    keeps scaled by 1 / (1 - p), the rest 0, from ``generator``."""
    active = [d for d in dropouts if d.p > 0]
    u = iter(torch.rand(len(active), rows, width, generator=generator))
    masks: list[torch.Tensor | None] = []
    for d in dropouts:
        if d.p <= 0:
            masks.append(None)
            continue
        keep = next(u) >= d.p
        masks.append(keep.to(dtype) * (1.0 / (1.0 - d.p)) if d.p < 1 else keep.to(dtype))
    return masks


def mlp(n_in: int, n_hidden: int, n_layers: int, dropout: float) -> Trunk:
    """A `Trunk` of ``n_layers`` blocks (per-cell, so eval is batch-independent)."""
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(n_in if i == 0 else n_hidden, n_hidden), nn.LayerNorm(n_hidden),
                   nn.ReLU(), AheadDropout(dropout)]
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
