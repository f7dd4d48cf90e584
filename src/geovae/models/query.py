"""Query mapping in the model layer, in scvi-tools' shape (``load_query_data`` then
``train``): `load_query` grows a reference model for a query's new covariate categories
(`geovae.models.transfer.grow`), sets what may train, and returns a model whose training data
is the query; its ordinary ``train()`` (the one `fit` uses) then trains only what the freeze
policy leaves free (`QueryMapping`)::

    model = GeoVAE.load_query(query, "reference.model", freeze="all")
    model.train()
    z = model.get_latent()

`geovae.tools.transfer` is this plus labels, novelty and UMAP placement.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anndata as ad
import torch

from geovae.data.checks import category_strings, check_obs_key
from geovae.data.h5 import backed_view, is_backed
from geovae.errors import InputError, OptionError
from geovae.models.persistence import load_model
from geovae.models.reference import ReferenceCells, log_library, negative_elbo
from geovae.models.transfer import apply_freeze, check_freeze, grow, trainable_count
from geovae.modules import BaseModule
from geovae.training import resolve_device

#: what a query's training changes from `geovae.training.TrainSettings`' defaults: no KL
#: warm-up (the reference's latent is there already) and no weight decay (with it, Adam would
#: move the frozen entries of a partly trained weight)
QUERY_SETTINGS = {"warmup_fraction": 0.0, "weight_decay": 0.0}


@dataclass
class QueryMapping:
    """What a query-mapped model knows about its query: the categories it added, the freeze
    policy and the masks of the new weight columns (see `geovae.models.transfer`)."""

    freeze: str
    masks: dict[str, torch.Tensor]
    new_categories: list[list[str]]
    #: how many weights the query's training changes (0: nothing to train)
    n_trainable: int

    def train_settings(self, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` training settings with the query's defaults (`QUERY_SETTINGS`)."""
        settings = {**QUERY_SETTINGS, **given}
        if settings["weight_decay"] and self.freeze != "none":
            raise OptionError(f"weight decay would change frozen weights: use {{opt}} 0 with "
                              f"freeze {self.freeze}", param="weight_decay")
        return settings

    @contextmanager
    def frozen(self, module: BaseModule) -> Iterator[None]:
        """Within the block only what the policy leaves free trains; afterwards every weight
        is trainable again and the module is in eval mode."""
        handles = apply_freeze(module, self.masks, self.freeze)
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for p in module.parameters():
                p.requires_grad_(True)
            module.eval()


def load_query(cls: type, query: ad.AnnData, reference: Any, *, freeze: str = "all",
               batch_key: str | list[str] | None = None, label_key: str | None = None,
               reference_cells: ReferenceCells | None = None, device: str = "auto") -> Any:
    """`GeoVAE.load_query`: a copy of the ``reference`` model (a model or its directory,
    never modified; the copy is of its class) ready to train on ``query``.

    The query's covariate categories the reference never saw get new weight columns
    (architecture surgery, `geovae.models.transfer.grow`). ``freeze``: ``all`` (only those
    columns train: the reference stays exactly as it was), ``covariates`` (also the layers
    the covariates enter) or ``none``. ``batch_key``: the reference's covariate column(s)
    (the default); ``label_key``: query labels used as semi-supervision. ``reference_cells``:
    what the query is compared with (default the reference's own, `get_reference_cells`).
    With ``freeze`` other than ``all`` the reference cells' latent is that of the
    reference's weights: re-embed them (`reembed_reference`, as `geovae.tools.transfer`
    does)."""
    check_freeze(freeze)
    model = load_model(reference, "cpu") if isinstance(reference, (str, os.PathLike)) \
        else reference
    spec = model.spec
    keys = [batch_key] if isinstance(batch_key, str) else list(batch_key or spec.batch_keys)
    if keys != spec.batch_keys:
        raise OptionError(f"the reference was trained with batch key(s) {spec.batch_keys or 'none'}"
                          f", not {keys}: the query must hold the same column(s)",
                          param="batch_key")
    for key in keys:
        check_obs_key(query, key, "batch_key")
    added = [sorted(set(category_strings(query.obs[key])) - set(cats))
             for key, cats in zip(keys, spec.batch_categories, strict=True)]
    view = query_view(query, spec.label_key, label_key)
    cells = model.get_reference_cells() if reference_cells is None else reference_cells
    grown, masks = grow(model, added)
    grown.device = resolve_device(device)
    grown.module.to(grown.device)
    grown.adata, grown.prepared = view, grown.prepare(view)
    grown.notes = [] if keys else ["the reference has no batch key: the query is embedded "
                                   "with the reference's weights as they are"]
    for name in ("delete_moves", "merge_moves", "warm_start"):  # off in the module; saved so
        if name in grown.config.model_options:
            grown.config.model_options[name] = 0.0 if name == "warm_start" else False
    grown.query_mapping = QueryMapping(freeze, masks, added,
                                       trainable_count(grown.module, masks, freeze))
    grown.reference_cells = cells
    return grown


def query_view(query: ad.AnnData, model_label_key: str | None, label_key: str | None
               ) -> ad.AnnData:
    """The query as the model reads it: its ``label_key`` column (or none) under the model's
    label column name, without copying the matrix."""
    obs = query.obs.copy()
    if model_label_key is not None:
        obs = obs.drop(columns=[model_label_key], errors="ignore")
        if label_key is not None:
            check_obs_key(query, label_key, "label_key")
            obs[model_label_key] = query.obs[label_key].to_numpy()
    if is_backed(query):
        return backed_view(query, obs)
    return ad.AnnData(X=query.X, obs=obs, var=query.var, layers=dict(query.layers))


def reembed_reference(model: Any, reference: ad.AnnData, cells: ReferenceCells,
                      notes: list[str]) -> ReferenceCells:
    """``cells`` (from the reference's fit output ``reference``) with their -ELBO under the
    query-mapped ``model`` (what a saved model keeps for the novelty check) and, unless the
    freeze policy is ``all`` (the reference's weights, and so its latent, unchanged), their
    new latent, from the reference output's own matrix."""
    freeze = model.query_mapping.freeze
    try:
        source = model.source(reference)
    except (InputError, OptionError) as exc:
        if freeze != "all":
            raise InputError(f"the reference AnnData cannot be re-embedded with the fine-tuned"
                             f" model ({exc}); use freeze 'all' or give the fit output") from exc
        notes.append(f"the reference AnnData's matrix does not fit the model ({exc}): the "
                     "check for cells the model explains badly is skipped")
        return cells
    nelbo = negative_elbo(model, source)
    latent = cells.latent if freeze == "all" else model.latent_of(source)
    return dataclasses.replace(cells, latent=latent, nelbo=nelbo,
                               log_library=log_library(source))
