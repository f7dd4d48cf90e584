"""``transfer``: map a query onto a trained reference, carry its labels over, and flag the
cells the reference cannot explain."""

from __future__ import annotations

import os
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from geovae import _keys as K
from geovae._threads import threaded
from geovae.data.checks import category_strings, check_obs_key, is_unlabelled
from geovae.data.h5 import backed_view, is_backed
from geovae.errors import InputError, OptionError
from geovae.models import CGMVAE, GeoVAE
from geovae.models.persistence import model_atlas
from geovae.models.transfer import FREEZE, apply_freeze, grow, negative_elbo, trainable_count
from geovae.tools.neighbors import knn
from geovae.tools.novelty import neighbour_pvalues, shifted_pvalues, soft_factor
from geovae.tools.record import update_record

#: label confidence is scaled by `soft_factor(p, UNKNOWN_TAIL)` (about 1/2 at p = UNKNOWN_TAIL),
#: p the cell's shifted -ELBO p-value among the reference cells (`geovae.tools.novelty`);
#: on the full Kang data (control -> stimulated, DC held out, freeze all, 20 + 15 epochs, six
#: runs) 0.01 called 64% of the DC and 6% of known-type cells unknown (0.02: 74% and 8%)
UNKNOWN_TAIL = 0.01
#: the same for the check by distance, used when the reference cells have no -ELBO
NEIGHBOUR_TAIL = 0.05
UNKNOWN = "unknown"
#: a supervised mixture's labels (`combine_votes`): q(y|x)^CLASSIFIER_POWER * (votes +
#: VOTE_PRIOR), the votes of the n_neighbors nearest labelled reference cells. On the full
#: Kang data (cgmvae, freeze covariates, seeds 0-1 of both splits of bench_transfer.py) the
#: vote raised accuracy from 0.904-0.932 (q(y|x) alone) to 0.917-0.937, and the tempered
#: classifier kept the unseen-type AUROC of the product (0.94 / 0.68, q(y|x) alone 0.93 / 0.66)
CLASSIFIER_POWER = 0.5
VOTE_PRIOR = 0.5


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
        last two need ``reference`` (its cells are re-embedded with the new weights); on Kang
        control -> stimulated ``covariates`` labelled 0.84 of cells right against 0.73 for
        ``all`` (see benchmarks/RESULTS.md).
    unknown_threshold
        Cells whose label confidence is below it are labelled "unknown".
    n_neighbors
        Reference cells that vote on each query cell's label (with q(y|x) for a supervised
        cgmvae: `combine_votes`) and place it on the reference's UMAP.
    precision
        The query training's hidden layers: ``auto``, ``32`` or ``bf16`` (see `geovae.fit`).
    threads
        torch's CPU threads during the call (see `geovae.fit`; ``--threads``).

    Returns
    -------
    The query-mapped model (a new object; save it to reuse it as a reference).

    Sets the following fields
    -------------------------
    ``adata.obsm['X_geovae']`` (reference latent space), ``adata.obs['geovae_label']``,
    ``adata.obs['geovae_label_confidence']``, ``adata.obsm['geovae_label_probs']``,
    ``adata.obsm['X_umap']`` (placed on the reference's UMAP axes; not written when the
    reference has no UMAP, e.g. fitted with ``--no-umap``: a note says so),
    ``adata.obs['geovae_cluster']``, ``adata.uns['geovae']['transfer']``.
    """
    from geovae.training import Trainer, TrainSettings, default_epochs, resolve_device

    if not isinstance(model, GeoVAE):
        model = GeoVAE.load(model, device="cpu")
    if freeze not in FREEZE:
        raise OptionError(f"unknown {{opt}} '{freeze}': use " + ", ".join(FREEZE), param="freeze")
    if freeze != "all" and reference is None:
        raise OptionError(f"{{opt}} {freeze} changes weights the reference cells depend on: "
                          "give the reference's fit output (--reference) so they are "
                          "re-embedded, or use freeze all", param="freeze")
    if not 0 <= unknown_threshold <= 1:
        raise OptionError("{opt} must be between 0 and 1", param="unknown_threshold")
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
    view = _query_view(query, spec.label_key, label_key)
    grown, masks = grow(model, added)
    grown.device = resolve_device(device)
    prepared = grown.prepare(view)
    source = grown.source_of(prepared)
    notes = []
    if not keys:
        notes.append("the reference has no batch key: the query is embedded with the reference's "
                     "weights as they are")
    handles = apply_freeze(grown.module, masks, freeze)
    if "delete_moves" in grown.config.model_options:  # off in the module; saved so too
        grown.config.model_options["delete_moves"] = False
    n_train = trainable_count(grown.module, masks, freeze)
    epochs_run = 0
    if n_train and (any(added) or freeze != "all"):
        epochs = default_epochs(view.n_obs) if epochs is None else epochs
        settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                 warmup_fraction=0.0, weight_decay=0.0, progress=progress,
                                 precision=precision)
        history = Trainer(grown.module, source, settings).fit()
        epochs_run = len(history.train)
        grown.history = history
        grown.train_params["precision"] = history.precision
    for h in handles:
        h.remove()
    for p in grown.module.parameters():
        p.requires_grad_(True)
    grown.module.eval()
    facts = grown.write_outputs(query, source)
    atlas = _atlas(model, reference)
    if reference is not None:  # the same cells as a saved model's: latent, labels, UMAP, -ELBO
        atlas.update(_reembed(grown, reference, freeze, notes))
    z = query.obsm[K.REP]
    probs, categories, conf, method = _label_probs(grown, source, atlas, z, n_neighbors)
    nelbo = negative_elbo(grown, source)
    if atlas is not None and "nelbo" in atlas:  # how typical each cell is (novelty.py)
        conf = conf * soft_factor(shifted_pvalues(nelbo, atlas["nelbo"]), UNKNOWN_TAIL)
    elif atlas is not None:  # no -ELBO for the reference cells: distance to their label's
        labels = atlas.get("labels") if probs is not None else None
        codes = None if probs is None else probs.argmax(1)
        p = neighbour_pvalues(z, atlas["latent"], n_neighbors, grown.config.latent, codes,
                              labels)
        conf = conf * soft_factor(p, NEIGHBOUR_TAIL)
    info: dict[str, Any] = {
        "n_features_matched": spec.n_features - prepared.n_missing_features,
        "n_missing_features": prepared.n_missing_features,
        "new_categories": {k: np.asarray(a, dtype=str) for k, a in zip(keys, added, strict=True)},
        "freeze": freeze, "n_trainable_weights": n_train, "epochs_run": epochs_run,
        "reference_cells": 0 if atlas is None else int(atlas["latent"].shape[0]),
    }
    if probs is not None:
        pred = np.asarray(categories, dtype=object)[probs.argmax(1)]
        pred[conf < unknown_threshold] = UNKNOWN
        query.obs[K.LABEL] = pd.Categorical(pred, categories=[*categories, UNKNOWN])
        query.obs[K.LABEL_CONFIDENCE] = conf.astype(np.float32)
        query.obsm[K.LABEL_PROBS] = probs.astype(np.float32)
        info["unknown_threshold"] = float(unknown_threshold)
        info["fraction_unknown"] = float(np.mean(pred == UNKNOWN))
        info["label_method"] = method
        if eval_key is not None:
            check_obs_key(query, eval_key, "eval_key")
            info.update(label_scores(query.obs[eval_key], pred, conf, categories))
    else:
        notes.append("no reference labels: the query is embedded without label transfer")
    umap = None if atlas is None else place_on_umap(z, atlas, n_neighbors, grown.config.latent)
    if umap is not None:
        query.obsm[K.UMAP] = umap
    elif atlas is not None:
        notes.append("the reference has no UMAP (fitted with --no-umap?): the query is not "
                     "placed on the reference's UMAP axes")
    if reference is not None and probs is not None and "labels" in atlas:
        mixing = _mixing(query, atlas, categories, pred, eval_key, grown.config.latent, seed,
                         notes)
        if mixing is not None:
            info["mixing"] = mixing
    grown.transfer_umap = umap
    grown.atlas = _updated_atlas(atlas, z, prepared.labels, umap, nelbo)
    missing = prepared.missing_features[:1000]
    update_record(query, fresh=True, **grown.summary(), **facts, transfer=info,
                  missing_features=np.asarray(missing, dtype=str) if missing else None,
                  n_missing_features=prepared.n_missing_features,
                  n_extra_features=prepared.n_extra_features, notes=notes or None)
    return grown


def _query_view(query: ad.AnnData, model_label_key: str | None, label_key: str | None
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


def _has_label_components(model: GeoVAE) -> bool:
    return isinstance(model, CGMVAE) and bool(model.spec.label_categories)


def _atlas(model: GeoVAE, reference: ad.AnnData | None) -> dict[str, np.ndarray] | None:
    """Reference cells: from the reference output file when given, else the model's (saved
    in its directory, or a fitted model's training cells)."""
    if reference is None:
        atlas = model_atlas(model)
        return None if atlas is None else {k: v for k, v in atlas.items() if v is not None}
    if K.REP not in reference.obsm:
        raise InputError(f"the reference AnnData has no obsm['{K.REP}']: give the output of "
                         "geovae fit for this model")
    out = {"latent": np.asarray(reference.obsm[K.REP], dtype=np.float32)}
    key = model.spec.label_key
    if key is not None and key in reference.obs:
        col = reference.obs[key]
        codes = pd.Index(model.spec.label_categories).get_indexer(category_strings(col))
        out["labels"] = np.where(is_unlabelled(col), -1, codes)
    if K.UMAP in reference.obsm:
        out["umap"] = np.asarray(reference.obsm[K.UMAP], dtype=np.float32)
    return out


def _reembed(model: GeoVAE, reference: ad.AnnData, freeze: str, notes: list[str]
             ) -> dict[str, np.ndarray]:
    """The reference cells' -ELBO under the query-mapped model (what a saved model keeps for
    the misfit check) and, unless ``freeze='all'`` (the reference's weights, and so its
    latent, unchanged), their new latent, from the reference output's own matrix."""
    try:
        source = model.source(reference)
    except (InputError, OptionError) as exc:
        if freeze != "all":
            raise InputError(f"the reference AnnData cannot be re-embedded with the fine-tuned"
                             f" model ({exc}); use freeze 'all' or give the fit output") from exc
        notes.append(f"the reference AnnData's matrix does not fit the model ({exc}): the "
                     "check for cells the model explains badly is skipped")
        return {}
    out = {"nelbo": negative_elbo(model, source)}
    if freeze != "all":
        out["latent"] = model.latent_of(source)
    return out


def _mixing(query: ad.AnnData, atlas: dict, categories: list[str], pred: np.ndarray,
            eval_key: str | None, geometry: str, seed: int, notes: list[str]
            ) -> dict[str, Any] | None:
    """Mixing of the query with the reference cells of the same labels (true labels with
    ``eval_key``, else the transferred ones, 'unknown' left out)."""
    from geovae.tools.mixing import query_mixing

    ref = atlas["labels"] >= 0
    if eval_key is not None:
        q_labels, source = category_strings(query.obs[eval_key]), "eval_key"
    else:
        q_labels, source = np.asarray(pred, dtype=str), "transferred"
    try:
        scores = query_mixing(atlas["latent"][ref],
                              np.asarray(categories, dtype=str)[atlas["labels"][ref]],
                              np.asarray(query.obsm[K.REP]), q_labels, geometry, seed=seed)
    except ValueError as exc:
        notes.append(f"no mixing score: {exc}")
        return None
    return {**scores, "labels": source}


def _updated_atlas(atlas: dict | None, z: np.ndarray, labels: np.ndarray,
                   umap: np.ndarray | None, nelbo: np.ndarray) -> dict[str, np.ndarray]:
    """The new model's reference cells: the old ones and the query (its known labels only)."""
    new = {"latent": z.astype(np.float32), "labels": labels.astype(np.int64), "nelbo": nelbo}
    if atlas is None:
        return new
    out = {"latent": np.concatenate([atlas["latent"], new["latent"]])}
    old_labels = atlas.get("labels", np.full(len(atlas["latent"]), -1))
    out["labels"] = np.concatenate([old_labels, new["labels"]])
    if umap is not None and "umap" in atlas:
        out["umap"] = np.concatenate([atlas["umap"], umap])
    if "nelbo" in atlas:
        out["nelbo"] = np.concatenate([atlas["nelbo"], nelbo])
    return out


def _label_probs(model: GeoVAE, source: Any, atlas: dict | None, z: np.ndarray, k: int
                 ) -> tuple[np.ndarray | None, list[str], np.ndarray, str]:
    """(label probabilities, categories, classifier confidence, how: ``mixture+knn``,
    ``mixture`` or ``knn``).

    A supervised mixture with labelled reference cells: q(y|x)^CLASSIFIER_POWER times
    (votes + VOTE_PRIOR), the votes of the k nearest labelled reference cells in the latent,
    normalised (`combine_votes`); q(y|x) alone without reference cells; the vote share alone
    for models without a classifier."""
    categories = list(model.spec.label_categories)
    votes = None
    if atlas is not None and "labels" in atlas and categories:
        labelled = atlas["labels"] >= 0
        if labelled.any():
            _, idx = knn(z, atlas["latent"][labelled], k, model.config.latent)
            codes = atlas["labels"][labelled][idx]
            votes = np.stack([(codes == c).sum(1) for c in range(len(categories))], axis=1)
    if _has_label_components(model):
        mass = model.cluster_probs_of(source)[:, : len(categories)]
        labelled_mass = mass.sum(1)  # below 1 when unlabelled components take some: lowers conf
        probs = mass / labelled_mass[:, None].clip(1e-12)
        if votes is None:
            return probs, categories, probs.max(1) * labelled_mass, "mixture"
        probs = combine_votes(probs, votes)
        return probs, categories, probs.max(1) * labelled_mass, "mixture+knn"
    if votes is None:
        return None, categories, np.ones(len(z)), "knn"
    probs = votes / votes.sum(1, keepdims=True)
    return probs, categories, probs.max(1), "knn"


def combine_votes(probs: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """Label probabilities from a classifier's ``probs`` and the label counts ``votes`` of
    each cell's nearest reference cells: a product of experts, probs^CLASSIFIER_POWER *
    (votes + VOTE_PRIOR), normalised per cell."""
    p = np.power(probs.clip(1e-12), CLASSIFIER_POWER) * (votes + VOTE_PRIOR)
    return p / p.sum(1, keepdims=True)


def place_on_umap(z: np.ndarray, atlas: dict[str, np.ndarray | None], k: int, geometry: str
                  ) -> np.ndarray | None:
    """Query UMAP coordinates on the reference's axes: the distance-weighted mean of the
    reference UMAP positions of each cell's k nearest reference cells (the initialisation
    scanpy's ingest and umap-learn's transform start from). None when the reference has no
    UMAP (a reference fitted with --no-umap)."""
    if atlas.get("umap") is None:
        return None
    dist, idx = knn(z, atlas["latent"], k, geometry)
    w = 1.0 / (dist + 1e-6)
    w /= w.sum(1, keepdims=True)
    return (atlas["umap"][idx] * w[..., None]).sum(1).astype(np.float32)


def label_scores(truth: pd.Series, pred: np.ndarray, conf: np.ndarray,
                 categories: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 on query cells of reference types ('unknown' counts as wrong),
    accuracy among those not called unknown, and the AUROC of low confidence for cells of
    types the reference lacks."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    t = category_strings(truth)
    known = np.isin(t, categories) & ~is_unlabelled(truth)
    out: dict[str, float] = {"n_evaluated": int(known.sum())}
    if known.any():
        out["accuracy"] = float(accuracy_score(t[known], pred[known]))
        called = known & (pred != UNKNOWN)
        out["known_called_unknown"] = float(1 - called.sum() / known.sum())
        if called.any():
            out["accuracy_called"] = float(accuracy_score(t[called], pred[called]))
        out["macro_f1"] = float(f1_score(t[known], pred[known], labels=categories,
                                         average="macro", zero_division=0))
    novel = ~np.isin(t, categories) & ~is_unlabelled(truth)
    if novel.any() and known.any():
        out["novel_auroc"] = float(roc_auc_score(novel[known | novel], -conf[known | novel]))
        out["novel_called_unknown"] = float(np.mean(pred[novel] == UNKNOWN))
    return out
