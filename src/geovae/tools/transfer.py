"""``transfer``: map a query onto a trained reference, carry its labels over, and flag the
cells the reference cannot explain. The steps live elsewhere, one job each: query mapping in
the model layer (`geovae.models.query`), labels (`geovae.tools._labels`), novelty
(`geovae.tools.novelty`) and the place on the reference's UMAP (`geovae.tools.placement`)."""

from __future__ import annotations

import os
from typing import Any

import anndata as ad
import numpy as np

from geovae import _keys as K
from geovae._threads import threaded
from geovae.data.checks import category_strings, check_obs_key
from geovae.errors import InputError, OptionError
from geovae.models import GeoVAE
from geovae.models.query import reembed_reference
from geovae.models.reference import (
    ReferenceCells,
    cells_of_output,
    log_library,
    negative_elbo,
    query_cells,
)
from geovae.models.transfer import check_freeze
from geovae.tools._labels import UNKNOWN, call_labels, label_probs, label_scores
from geovae.tools.novelty import NOVELTY_CHECKS, VOTE_POWER, typicality
from geovae.tools.placement import place_on_umap
from geovae.tools.record import update_record

__all__ = ["UNKNOWN", "transfer"]
#: fewest query cells: the query's cells are clustered (`geovae.tools.cluster`)
MIN_QUERY_CELLS = 3


@threaded
def transfer(
    query: ad.AnnData,
    model: GeoVAE | str | os.PathLike,
    *,
    batch_key: str | list[str] | None = None,
    label_key: str | None = None,
    eval_key: str | None = None,
    reference: ad.AnnData | None = None,
    freeze: str = "all",
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    unknown_threshold: float = 0.5,
    novelty: str = "query",
    n_neighbors: int = 15,
    seed: int = 0,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = 0,
    progress: bool = True,
) -> GeoVAE:
    """Map ``query`` onto the reference ``model`` and transfer its labels.

    Parameters
    ----------
    query
        New cells; features are matched by name (missing ones zero-filled).
    model
        A trained model or its directory; never modified.
    batch_key
        The reference's covariate column(s), present in the query (default: the reference's).
        Categories the reference never saw get new weights (architecture surgery).
    label_key
        Optional query labels used as semi-supervision (cgmvae); never required.
    eval_key
        Optional true labels of the query, only to report accuracy and macro-F1.
    reference
        The reference's output AnnData (``obsm['X_geovae']``, labels, ``obsm['X_umap']``,
        and the matrix: its cells' -ELBO calibrates the misfit check); default: the reference
        cells saved in the model directory, or a fitted model's training cells. With it, the
        query's mixing with the reference's cells of the same labels is scored
        (`geovae.tools.mixing.query_mixing`, ``uns['geovae']['transfer']['mixing']``).
    freeze
        ``all`` (only new categories' weights train; the reference stays exactly as it was),
        ``covariates`` (also the layers the covariates enter) or ``none`` (everything). The
        last two need ``reference`` (its cells are re-embedded with the new weights).
    unknown_threshold
        Cells whose label confidence is below it are labelled "unknown". The confidence is
        the novelty factor (`geovae.tools.novelty.typicality`: about 1/2 at novelty
        p-value 0.05) times the label probability — for the default VAE's neighbour votes
        with the default check, the factor alone (`novelty.VOTE_POWER`).
    novelty
        The unknown check (`geovae.tools.novelty.novelty_pvalues`): ``query`` (how well the
        reference explains each cell and regions of the joint latent denser in query cells
        than both the query's overall and the cell's label's share: unseen-type AUROC 0.742
        on the development split, 0.719 on the reported pairs, against 0.657 / 0.648 for
        the first part alone without the depth-free step; a 150-NN search over reference +
        query cells), ``reference`` (the first part alone) or ``query-overall`` (against the
        overall share only: 0.765 without the step, but a known type commoner in the query
        than in the reference is flagged too); each ends depth-free in the query's own terms
        (`geovae.tools.depth_free`).
    n_neighbors
        Reference cells that vote on each query cell's label (with q(y|x) for a supervised
        cgmvae: `combine_votes`) and place it on the reference's UMAP.
    precision
        The query training's hidden layers: ``auto``, ``32`` or ``bf16`` (see `geovae.fit`).
    threads
        torch's CPU threads during the call (see `geovae.fit`).

    Returns
    -------
    The query-mapped model (`GeoVAE.load_query`, trained with `GeoVAE.train`; a new object
    whose ``reference_cells`` are the reference's and the query's: save it to reuse it as a
    reference).

    Sets the following fields
    -------------------------
    ``adata.obsm['X_geovae']`` (reference latent space), ``adata.obs['geovae_label']``,
    ``adata.obs['geovae_label_confidence']``, ``adata.obsm['geovae_label_probs']``,
    ``adata.obsm['X_umap']`` (placed on the reference's UMAP axes; not written when the
    reference has no UMAP, e.g. its run made none: a note says so),
    ``adata.obs['geovae_cluster']``, ``adata.uns['geovae']['transfer']``.
    """
    check_freeze(freeze)
    if 0 < query.n_obs < MIN_QUERY_CELLS:  # before the query trains (0 cells: its own error)
        raise InputError(f"the query has {query.n_obs} cell(s) and its cells are clustered: "
                         f"give a query of at least {MIN_QUERY_CELLS} cells")
    if freeze != "all" and reference is None:
        raise OptionError(f"{{opt}} {freeze} changes weights the reference cells depend on: "
                          "give the reference's fit output ({reference}) so they are "
                          "re-embedded, or use {freeze='all'}", param="freeze")
    if not 0 <= unknown_threshold <= 1:
        raise OptionError("{opt} must be between 0 and 1", param="unknown_threshold")
    if novelty not in NOVELTY_CHECKS:
        raise OptionError(f"unknown {{opt}} '{novelty}': use {', '.join(NOVELTY_CHECKS)}",
                          param="novelty")
    if not isinstance(model, GeoVAE):
        model = GeoVAE.load(model, device="cpu")
    spec = model.spec
    given = None if reference is None else cells_of_output(reference, spec.label_key,
                                                            spec.label_categories)
    mapped = GeoVAE.load_query(query, model, freeze=freeze, batch_key=batch_key,
                               label_key=label_key, reference_cells=given, device=device)
    notes, prepared, mapping = list(mapped.notes), mapped.prepared, mapped.query_mapping
    if mapping.n_trainable:
        mapped.train(epochs, batch_size, lr, device, progress, seed=seed, precision=precision)
    source = mapped.source()
    facts = mapped.write_outputs(query, source)
    cells = mapped.reference_cells
    if reference is not None:  # the same cells as a saved model's: latent, labels, UMAP, -ELBO
        cells = reembed_reference(mapped, reference, cells, notes)
    z, geometry = query.obsm[K.REP], mapped.config.latent
    probs, categories, conf, method = label_probs(mapped, source, cells, z, n_neighbors)
    nelbo, depth = negative_elbo(mapped, source), log_library(source)
    if cells is not None:  # how typical each cell is of the reference cells (novelty.py)
        codes = None if probs is None else probs.argmax(1)
        factor, ran = typicality(z, nelbo, cells, codes, n_neighbors, geometry, depth, novelty)
        votes_out = method == "knn" and ran != "earlier"
        conf = factor * conf ** (VOTE_POWER if votes_out else 1.0)
        # an older model on count data: say why; data that are not counts (no depths) never
        # had the query-aware check, and the record's 'earlier' says which ran
        if ran == "earlier" and novelty != "reference" and depth is not None:
            notes.append(f"--novelty {novelty} needs reference cells with -ELBO and "
                          "library sizes on both sides (models saved since issue 23, count "
                          "data): the earlier check by -ELBO or distance was used")
        novelty = ran
    elif probs is not None:  # a supervised c*GMΔVAE's q(y|x) alone
        notes.append("the model directory holds no reference cells (reference.npz): the "
                     "labels are the classifier's q(y|x) and no unknown check ran (refit the "
                     "model, or give the reference's fit output as the reference)")
        novelty = "none"
    info: dict[str, Any] = {
        "n_features_matched": spec.n_features - prepared.n_missing_features,
        "n_missing_features": prepared.n_missing_features,
        "new_categories": {k: np.asarray(a, dtype=str)
                           for k, a in zip(spec.batch_keys, mapping.new_categories, strict=True)},
        "freeze": freeze, "n_trainable_weights": mapping.n_trainable,
        "epochs_run": len(mapped.history.train) if mapping.n_trainable else 0,
        "reference_cells": 0 if cells is None else cells.n_cells,
    }
    if probs is not None:
        pred = call_labels(query, probs, categories, conf, unknown_threshold)
        info.update(unknown_threshold=float(unknown_threshold), novelty=novelty,
                    fraction_unknown=float(np.mean(pred == UNKNOWN)), label_method=method)
        if eval_key is not None:
            check_obs_key(query, eval_key, "eval_key")
            info.update(label_scores(query.obs[eval_key], pred, conf, categories))
    else:
        notes.append("no reference labels: the query is embedded without label transfer")
    umap = None if cells is None else place_on_umap(z, cells, n_neighbors, geometry)
    if umap is not None:
        query.obsm[K.UMAP] = umap
    elif cells is not None:
        notes.append("the reference has no UMAP (fitted with --no-umap?): the query is not "
                     "placed on the reference's UMAP axes")
    if reference is not None and probs is not None and cells.labels is not None:
        mixing = _mixing(query, cells, categories, pred, eval_key, geometry, seed, notes)
        if mixing is not None:
            info["mixing"] = mixing
    mapped.reference_cells = (query_cells(z, prepared.labels, nelbo, depth) if cells is None
                              else cells.with_query(z, prepared.labels, umap, nelbo, depth))
    missing = prepared.missing_features[:1000]
    update_record(query, fresh=True, **mapped.summary(), **facts, transfer=info,
                  missing_features=np.asarray(missing, dtype=str) if missing else None,
                  n_missing_features=prepared.n_missing_features,
                  n_extra_features=prepared.n_extra_features, notes=notes or None)
    return mapped


def _mixing(query: ad.AnnData, cells: ReferenceCells, categories: list[str], pred: np.ndarray,
            eval_key: str | None, geometry: str, seed: int, notes: list[str]
            ) -> dict[str, Any] | None:
    """Mixing of the query with the reference cells of the same labels (true labels with
    ``eval_key``, else the transferred ones, 'unknown' left out)."""
    from geovae.tools.mixing import query_mixing

    ref = cells.labels >= 0
    if eval_key is not None:
        q_labels, source = category_strings(query.obs[eval_key]), "eval_key"
    else:
        q_labels, source = np.asarray(pred, dtype=str), "transferred"
    try:
        scores = query_mixing(cells.latent[ref],
                              np.asarray(categories, dtype=str)[cells.labels[ref]],
                              np.asarray(query.obsm[K.REP]), q_labels, geometry, seed=seed)
    except ValueError as exc:
        notes.append(f"no mixing score: {exc}")
        return None
    return {**scores, "labels": source}
