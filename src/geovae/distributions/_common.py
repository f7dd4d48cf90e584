"""Pieces shared by the directional distributions."""

from __future__ import annotations

import torch
from torch import Tensor


def broadcast_loc_scale(loc: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, torch.Size]:
    """Broadcast a mean direction (..., m) and a concentration (...) or (..., 1)."""
    if scale.dim() == loc.dim() and scale.shape[-1] == 1:
        scale = scale.squeeze(-1)
    batch = torch.broadcast_shapes(loc.shape[:-1], scale.shape)
    return loc.expand(*batch, loc.shape[-1]), scale.expand(batch), batch
