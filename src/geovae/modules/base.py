"""What every torch module of geovae shares: the minibatch it reads, the loss it returns, and
the hooks the trainer and query mapping call.

Modules are pure torch (no AnnData): a `Batch` in, a `LossOutput` out. The AnnData-facing
model classes in `geovae.models` bind a module class and build it from a validated config.
`BaseModule` declares the hooks (as scvi-tools' ``BaseModuleClass`` does with ``on_load``):
no-ops here, overridden where a module has work to do (the c*GMΔVAE).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from geovae.data.batch import Batch
from geovae.data.sources import DataSource

__all__ = ["BaseModule", "Batch", "LossOutput", "processes"]


def processes() -> int:
    """Processes training together: torch.distributed's group size where one is running (the
    trainer's DDP session), else 1. A `synced_state` update of each rank's slice of the global
    minibatch uses it to step as one process would on the whole minibatch."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


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


class BaseModule(nn.Module, ABC):
    """A torch module the trainer fits: ``loss(batch, kl_weight)`` returns a `LossOutput`.

    Hooks, no-ops unless a subclass overrides them:

    * `before_epoch` — the trainer calls it before every epoch (True: the objective changed,
      early stopping starts again);
    * `on_plateau` — the trainer calls it where early stopping would end training (True: a
      next phase starts from the best weights instead);
    * `after_training` — the trainer calls it once on the kept (best) weights;
    * `freeze_for_query` — query mapping calls it with the freeze policy before the query
      trains (state the gradient masks cannot express, e.g. global mixture weights);
    * `prepare` — the trainer calls it on each training minibatch where it is built (on the
      batch-building thread with `TrainSettings.prefetch`): work that depends on the data
      only, done there instead of in the step; `draw_ahead` after it, with the trainer's own
      generator: the step's random numbers that can be drawn there;
    * `synced_state` — state the module updates itself during training (not through the
      optimiser): on several processes the trainer averages it over the ranks after every step.
    """

    @abstractmethod
    def loss(self, batch: Batch, kl_weight: float = 1.0) -> LossOutput:
        """-ELBO of a `Batch` (what the trainer calls)."""

    def prepare(self, batch: Batch) -> Batch:
        """Data-only work on a training minibatch before its step (no parameters, no random
        numbers: it may run on another thread). Default: the batch as it is."""
        return batch

    def draw_ahead(self, batch: Batch, generator: torch.Generator) -> Batch:
        """The random numbers of a training step that do not depend on the parameters (e.g.
        dropout masks), drawn from the trainer's ``generator`` on the batch-building thread
        and attached to the batch. Default: none; the step draws its own."""
        return batch

    def synced_state(self) -> list[torch.Tensor]:
        """Tensors the module updates in place during training steps outside the optimiser
        (e.g. a stochastic variational update); the trainer averages them over the ranks after
        every step when several processes train. Default: none."""
        return []

    def lr_scales(self) -> dict[str, float]:
        """Learning-rate multipliers by parameter-name prefix (the optimiser's groups).
        Default: none, every parameter at the training's learning rate."""
        return {}

    def has_phases(self) -> bool:
        """Whether `before_epoch` changes which parameters the loss uses (several devices
        then look for unused parameters every step). Default: False."""
        return False

    def before_epoch(self, epoch: int, epochs: int, source: DataSource, idx: torch.Tensor,
                     seed: int) -> bool:
        """Before epoch ``epoch`` of ``epochs`` (training cells ``idx``). Default: nothing,
        False."""
        return False

    def on_plateau(self, epoch: int) -> bool:
        """Early stopping would end training after epoch ``epoch``. True: the module goes on
        to its next phase instead (the trainer restores the best weights so far and early
        stopping starts again). Default: False, training ends."""
        return False

    def after_training(self, source: DataSource, idx: torch.Tensor, seed: int) -> None:
        """A last step on the kept weights, with the training cells ``idx`` of ``source`` and
        a seed (the same on every rank). Default: nothing."""

    def freeze_for_query(self, policy: str) -> None:
        """Prepare for query training under the freeze ``policy`` (``all``, ``covariates``,
        ``none``; `geovae.models.transfer`). Default: nothing."""
