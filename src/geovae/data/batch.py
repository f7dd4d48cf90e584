"""The minibatch every source yields and every module reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """One minibatch: raw data ``x`` (B, features), one-hot covariates ``c`` (B, width) or
    None, and label codes (B,), -1 where a cell is unlabelled."""

    x: torch.Tensor
    c: torch.Tensor | None
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]
