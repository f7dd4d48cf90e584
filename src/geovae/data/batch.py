"""The minibatch every source yields and every module reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Batch:
    """One minibatch: raw data ``x`` (B, features), one-hot covariates ``c`` (B, width) or
    None, and label codes (B,), -1 where a cell is unlabelled."""

    x: torch.Tensor
    c: torch.Tensor | None
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


def one_hot(codes: torch.Tensor, idx: torch.Tensor, n_categories: list[int]
            ) -> torch.Tensor | None:
    """One-hot covariates of the rows ``idx`` of ``codes`` (cells, keys), concatenated over
    covariate keys; None without covariates."""
    if not n_categories:
        return None
    blocks = [nn.functional.one_hot(codes[idx, k], n).float()
              for k, n in enumerate(n_categories)]
    return torch.cat(blocks, dim=-1)
