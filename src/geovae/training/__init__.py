"""Training: a `Trainer` loop over replaceable parts, and the loss `History` it returns."""

from geovae.training.parts import default_epochs, resolve_device
from geovae.training.trainer import History, Trainer, TrainSettings, evaluate, train_module

__all__ = ["History", "TrainSettings", "Trainer", "default_epochs", "evaluate",
           "resolve_device", "train_module"]
