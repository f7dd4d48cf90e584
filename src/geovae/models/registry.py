"""Model classes by the name saved in a model directory and given to ``fit(model=...)``."""

from __future__ import annotations

from typing import Any

from geovae.errors import OptionError

MODELS: dict[str, type[Any]] = {}


def register(cls: type[Any]) -> type[Any]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    MODELS[cls.name] = cls
    return cls


def model_class(name: str) -> type[Any]:
    """The model class called ``name`` (vae, cgmvae)."""
    if name not in MODELS:
        raise OptionError(f"unknown {{opt}} '{name}': use " + " or ".join(MODELS), param="model")
    return MODELS[name]
