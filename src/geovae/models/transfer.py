"""Architecture surgery for query mapping (as scArches does it): a query's new batch or
condition categories get new input columns in every layer the covariates enter; the
reference's weights are kept exactly and only what the freeze policy names is trained.

``freeze``:

* ``all`` — only the new categories' columns are trained (the default: the reference model,
  and so the reference cells' latent, stays exactly as it was);
* ``covariates`` — the whole layers the covariates enter are trained as well;
* ``none`` — every weight is fine-tuned on the query.

Frozen entries of a partly trained weight get a zero gradient from a hook; the optimiser runs
without weight decay, so Adam leaves them bit-for-bit unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from geovae.errors import OptionError
from geovae.modules import BaseModule

FREEZE = ("all", "covariates", "none")


def grow(model: Any, added: list[list[str]]) -> tuple[Any, dict[str, torch.Tensor]]:
    """A copy of ``model`` whose covariate keys also know the ``added`` categories (one list
    per key, appended after the reference's), with the reference's weights in place and the
    new columns zero. Returns it and, per covariate-layer weight, a mask of the new columns."""
    spec = model.spec
    old_cats = [list(c) for c in spec.batch_categories]
    new_cats = [old + list(extra) for old, extra in zip(old_cats, added, strict=True)]
    new_spec = dataclasses.replace(spec, batch_categories=new_cats)
    grown = type(model).from_saved(dataclasses.replace(model.config), new_spec)
    old_state = model.module.state_dict()
    state = grown.module.state_dict()
    layers = dict(grown.module.covariate_layers())
    masks: dict[str, torch.Tensor] = {}
    # where each old one-hot column goes in the grown block
    old_pos = torch.cat([torch.arange(len(old)) + sum(len(c) for c in new_cats[:k])
                         for k, old in enumerate(old_cats)]) if old_cats else torch.zeros(0)
    for name, value in state.items():
        layer, _, kind = name.rpartition(".")
        if layer in layers and kind == "weight":
            start = layers[layer]
            new = torch.zeros_like(value)
            new[:, :start] = old_state[name][:, :start]
            new[:, start + old_pos.long()] = old_state[name][:, start:]
            state[name] = new
            mask = torch.ones_like(value, dtype=torch.bool)
            mask[:, :start] = False
            mask[:, start + old_pos.long()] = False
            masks[name] = mask
        else:
            state[name] = old_state[name]
    grown.module.load_state_dict(state)
    grown.module.to(model.device).eval()
    grown.history, grown.train_params = model.history, dict(model.train_params)
    if hasattr(model, "label_temperature"):
        grown.label_temperature = model.label_temperature
    if getattr(model.module, "start_resolution", None) is not None:  # the reference's start
        grown.module.start_resolution = model.module.start_resolution
        grown.module.start_candidates = model.module.start_candidates
    grown.device = model.device
    return grown, masks


def apply_freeze(module: BaseModule, masks: dict[str, torch.Tensor], policy: str
                 ) -> list[Any]:
    """Set what trains under ``policy`` (the module's own state through its
    ``freeze_for_query`` hook); returns the gradient-hook handles (remove them after
    training)."""
    check_freeze(policy)
    module.freeze_for_query(policy)
    handles = []
    layers = {name.rpartition(".")[0] for name in masks}
    for name, param in module.named_parameters():
        layer = name.rpartition(".")[0]
        if policy == "none":
            param.requires_grad_(True)
        elif policy == "covariates":
            param.requires_grad_(layer in layers)
        else:  # all: only the new columns
            mask = masks.get(name)
            trainable = mask is not None and bool(mask.any())
            param.requires_grad_(trainable)
            if trainable:
                keep = mask.to(param.device, param.dtype)
                handles.append(param.register_hook(lambda g, keep=keep: g * keep))
    return handles


def trainable_count(module: torch.nn.Module, masks: dict[str, torch.Tensor], policy: str
                    ) -> int:
    """How many weights ``policy`` trains (what `apply_freeze` lets train)."""
    if policy == "all":
        return int(sum(int(m.sum()) for m in masks.values()))
    layers = {name.rpartition(".")[0] for name in masks}
    return int(sum(p.numel() for name, p in module.named_parameters()
                   if policy == "none" or name.rpartition(".")[0] in layers))


def check_freeze(policy: str) -> None:
    """A one-line error for a freeze policy that is not one of `FREEZE`."""
    if policy not in FREEZE:
        raise OptionError(f"unknown {{opt}} '{policy}': use " + ", ".join(FREEZE), param="freeze")
