"""``cluster``: Leiden on the kNN graph of an embedding (in the latent's own metric), or the
mixture's argmax, plus UMAP from the same graph."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import anndata as ad
import numpy as np
import torch

from geovae import _keys as K
from geovae.errors import InputError, OptionError
from geovae.graph.merge import DEFAULT_MERGE, OFF, check_merge, merge_clusters
from geovae.graph.neighbors import (
    ANN_THRESHOLD,
    LEIDEN,
    ApproxKNN,
    knn_recall,
    knn_transformer,
    neighbors_graph,
)
from geovae.tools.record import drop_fields, update_record
from geovae.tools.resolution import AUTO, choose_resolution
from geovae.tools.umap_keys import put_back, set_aside

METHODS = ("leiden", "mixture")
#: UMAP optimisation epochs by default up to `CHEAP_UMAP_CELLS` cells; 0 is umap-learn's own
#: default (500 up to 10,000 cells, 200 above). On the bundled mouse 10k cells and 20k simulated
#: cells, 100 epochs gave the same trustworthiness and cluster silhouette as 500 / 200 within
#: the spread between two seeds, 2-3% lower kNN preservation, at a half to a fifth of the time
#: (benchmarks/RESULTS.md, "Fixed costs of a fit")
UMAP_EPOCHS = 100
#: above `CHEAP_UMAP_CELLS` cells the default runs `LARGE_UMAP_EPOCHS` epochs at an initial
#: learning rate of `LARGE_UMAP_LEARNING_RATE` (umap-learn: 1, decaying linearly to 0), so the
#: summed step size matches 100 epochs at 1 (100 / 70): 30 % less time, to bring the UMAP
#: under 10 % of a 10-epoch fit of 20k cells (issue 26). Chosen on the development latent only
#: (the 20k simulated cells of `bench_vs_scvi.py`, geovae seed 0, /tmp/vs_quiet2/geovae_s0;
#: `benchmarks/bench_umap_saved.py`, paired with 100 epochs at 1 over UMAP seeds): 70 (or 80)
#: epochs at 1 lost trustworthiness (-0.0016, p 0.007, 3 seeds) and type silhouette (-0.008);
#: at 1.43, 6 seeds: CPU -32 %, trustworthiness -0.0001, silhouette +0.006 (both n.s.), global
#: structure -0.004 (n.s.), 5 % fewer latent neighbours kept (0.068 -> 0.065, p 0.003); 1.2
#: and 75 at 1.33 were no better. Sets that chose nothing: benchmarks/RESULTS.md ("Fixed costs
#: of a fit") and docs/speed.md ("UMAP").
#: ``umap_epochs=N`` runs N epochs at 1 (100: the earlier default)
LARGE_UMAP_EPOCHS = 70
LARGE_UMAP_LEARNING_RATE = 1.43
#: negative samples per positive edge sample in the UMAP's optimiser above `CHEAP_UMAP_CELLS`
#: cells (umap-learn: 5); each epoch's cost grows with 1 + this. 5 -> 2 halved the CPU time on
#: 20k simulated cells (5.5-5.9 -> 3.4 s) at a trustworthiness 0.0004 lower and a higher
#: type silhouette; on 1,500 cells it lost 0.035 of trustworthiness, so smaller data keep 5.
#: 2 -> 1 with the PCA start, chosen on the development draw (`bench_umap.py --data-seed 0`,
#: 20k cells, 3 seeds): CPU 1.7-1.9 vs 2.4-2.9 s, trustworthiness within 0.0003, type silhouette
#: 0.77 vs 0.76, global structure 0.49-0.51 vs 0.48-0.54; reported draws 1-2 (chose nothing):
#: CPU 17-39 % lower in all 6 runs, trustworthiness 0.0001-0.0007 lower, silhouette +0.01-0.02,
#: 1-8 % fewer latent neighbours kept (docs/speed.md, "UMAP"). ``umap_epochs=0``: umap-learn's
#: defaults (5)
UMAP_NEGATIVE_SAMPLES = 1
UMAP_LEARN_NEGATIVE_SAMPLES = 5
CHEAP_UMAP_CELLS = 10000
#: the UMAP's starting layout at geovae's epochs: "pca" (`umap_init`), not scanpy's spectral
#: embedding of the graph, which cost 2.7 of 5.0 CPU s on 20k simulated cells whose graph falls
#: apart by batch. Chosen on the development simulation (`bench_umap.py --data-seed 0`, 20k
#: cells, 3 seeds): CPU 2.4-2.9 vs 2.9-3.0 s, trustworthiness within 0.0005, type silhouette
#: 0.76 vs 0.78, types' centroid distances kept better (Spearman 0.49-0.54 vs 0.30-0.39).
#: Reported draws 1-2 (chose nothing): CPU 18-24 % lower (draw means), trustworthiness
#: within 0.0005, type silhouette within 0.008 (0.005-0.008 lower on draw 1), global
#: structure better on draw 1 (0.63-0.66 vs 0.46-0.50), worse on draw 2 (0.48-0.52 vs
#: 0.59-0.61): a saving, not a better picture (docs/speed.md, "UMAP"). ``umap_epochs=0``
#: keeps umap-learn's spectral start
UMAP_INIT = "pca"

log = logging.getLogger("geovae.tools")


def cluster(
    adata: ad.AnnData,
    *,
    use_rep: str = K.REP,
    resolution: float | str = 1.0,
    n_neighbors: int = 15,
    key_added: str = K.CLUSTER,
    seed: int = 0,
    umap: bool = True,
    method: str = "leiden",
    ann_threshold: int = ANN_THRESHOLD,
    umap_epochs: int | None = None,
    merge: float | str | None = DEFAULT_MERGE,
) -> ad.AnnData:
    """Cluster cells on the kNN graph of ``obsm[use_rep]`` and compute a UMAP from it.

    Parameters
    ----------
    adata
        Holds the embedding in ``obsm[use_rep]``.
    use_rep
        obsm key of the embedding (default ``X_geovae``).
    resolution
        Leiden resolution: higher gives more clusters; ``"auto"``: chosen from the data, the
        resolution of a grid (0.1-2.0) whose clusters are the most stable when a fifth of the
        cells is left out (`geovae.tools.resolution`); the choice and its evidence are logged
        and recorded in ``uns['geovae']['cluster']['resolution_choice']``.
    n_neighbors
        Neighbours per cell in the graph.
    key_added
        obs column for the clusters.
    seed
        Seed of Leiden and UMAP.
    umap
        Also compute a UMAP from the graph: ``obsm['X_geovae_umap']``, copied to scanpy's
        ``obsm['X_umap']`` where the input holds no UMAP of its own (a user's ``X_umap`` and
        ``uns['umap']`` are never changed; `geovae.tools.umap_keys`, the same keys as the
        ``geovae`` commands). geovae's earlier UMAP is dropped also without one.
    method
        ``leiden``, or ``mixture`` (argmax of ``obsm['geovae_cluster_probs']`` of a cgmvae).
    ann_threshold
        Above this many cells (default 50,000) the kNN graph is approximate (pynndescent, with
        the latent's own metric) instead of exact, which is quadratic in the cells for curved
        latents; its recall against exact kNN is measured on 1,000 random cells and recorded.
        0 always approximates.
    umap_epochs
        The UMAP's optimisation epochs. None (default): 100 up to 10,000 cells; above, 70 at
        an initial learning rate of 1.43 (the summed step size of 100 at umap-learn's 1) with
        1 negative sample per edge sample (5 below). N: N epochs at learning rate 1 (100: the
        earlier default). 0: umap-learn's defaults (500 epochs up to 10,000 cells, 200
        above, 5 negative samples, spectral start): a closer picture at 5-13 times the time.
        Recorded in ``uns['geovae']['umap']`` (``n_epochs``, ``negative_sample_rate``,
        ``learning_rate``, ``init``).
    merge
        After Leiden at a given resolution, merge the two clusters the graph cannot tell apart
        (PAGA connectivity above ``merge``, `geovae.graph.merge`) until none is left;
        ``"gap"`` (the default): above 0.8, then on down to 0.3 where that ends at a tenfold
        drop in connectivity (`geovae.graph.merge.gap_stop`); recorded in
        ``uns['geovae']['cluster']['merge']`` and logged. None (or ``"off"``): Leiden's
        clusters as they are (also ``sc.tl.leiden`` on the shared graph), recorded as
        ``{'rule': 'off'}``. Not with ``auto``.

    The graph uses the latent's own distance (great-circle on the sphere, geodesic on the
    hyperboloid) when the representation comes from a curved geovae model.
    ``uns['geovae']['cluster']`` records ``knn_method`` (exact or pynndescent) and
    ``knn_recall``: the share of the approximate neighbours of 1,000 random cells that are
    among their exact ``n_neighbors`` nearest (1.0 for exact kNN).

    Sets the following fields
    -------------------------
    ``adata.obs['geovae_cluster']``, ``adata.obsm['X_geovae_umap']`` (and ``['X_umap']``
    where free), ``adata.uns['geovae_umap']`` (and ``['umap']``),
    ``adata.obsp['geovae_neighbors_distances']``, ``adata.obsp['geovae_neighbors_connectivities']``,
    ``adata.uns['geovae']['cluster']``, ``adata.uns['geovae']['umap']``; and the same graph
    under scanpy's default keys (``uns['neighbors']``, ``obsp['connectivities']``,
    ``obsp['distances']``, so ``sc.tl.leiden(adata)`` works) unless they hold a graph of the
    user's.
    """
    import scanpy as sc

    if use_rep not in adata.obsm:
        avail = ", ".join(adata.obsm.keys()) or "none"
        raise OptionError(f"representation '{use_rep}' not in obsm (available: {avail}); "
                          "run `geovae fit` first or pass {opt}", param="use_rep")
    auto = isinstance(resolution, str) and resolution.lower() == AUTO
    if not auto and (isinstance(resolution, (str, bool)) or not resolution > 0):
        raise OptionError("{opt} must be positive or auto", param="resolution")
    if method not in METHODS:
        raise OptionError(f"unknown {{opt}} '{method}': use leiden or mixture", param="method")
    if isinstance(ann_threshold, bool) or not isinstance(ann_threshold, (int, np.integer)) \
            or ann_threshold < 0:
        raise OptionError("{opt} must be a whole number >= 0", param="ann_threshold")
    whole = isinstance(umap_epochs, (int, np.integer)) and not isinstance(umap_epochs, bool)
    if umap_epochs is not None and not (whole and umap_epochs >= 0):
        raise OptionError("{opt} must be a whole number >= 0 (0: umap-learn's default)",
                          param="umap_epochs")
    merge = check_merge(merge)
    if adata.n_obs < 3:
        raise InputError(f"clustering needs at least 3 cells, got {adata.n_obs}")
    rep = np.asarray(adata.obsm[use_rep])
    if not np.isfinite(rep).all():
        raise InputError(f"obsm['{use_rep}'] contains NaN/Inf values")
    if method == "mixture":
        probs = adata.obsm.get(K.CLUSTER_PROBS)
        if probs is None:
            raise OptionError(f"{{opt}} mixture needs obsm['{K.CLUSTER_PROBS}'] from a "
                              "{model='cgmvae'} fit; use leiden otherwise",
                              param="method")
        adata.obs[key_added] = categorical(np.asarray(probs).argmax(1).astype(str))
    n_neighbors = max(2, min(n_neighbors, adata.n_obs - 1))
    geometry = geometry_of(adata, use_rep)
    scanpy_slot_free = _scanpy_slot_free(adata)
    transformer = neighbors_graph(adata, use_rep, K.NEIGHBORS, geometry, n_neighbors, seed=seed,
                                  ann_threshold=ann_threshold, describe=True)
    if scanpy_slot_free:  # also where scanpy looks by default (sc.tl.leiden(adata))
        _share_graph(adata)
    knn_info: dict[str, Any] = {"knn_method": "exact", "knn_recall": 1.0}
    if isinstance(transformer, ApproxKNN):
        recall, n_queries = knn_recall(rep, transformer.indices_, transformer.distances_,
                                       geometry, seed=seed)
        knn_info = {"knn_method": "pynndescent", "knn_recall": recall,
                    "knn_recall_cells": n_queries, "ann_threshold": int(ann_threshold)}
    choice = None
    merge_info = None
    if method == "leiden" and auto:
        threads = torch.get_num_threads()

        def make(k: int, n: int) -> Any:
            return knn_transformer(geometry, k, n_obs=n, ann_threshold=ann_threshold, seed=seed,
                                   n_jobs=threads)

        choice = choose_resolution(adata, rep, K.NEIGHBORS, make, n_neighbors, seed=seed)
        torch.set_num_threads(threads)
        resolution = choice.resolution
        log.info(choice.describe())
        adata.obs[key_added] = categorical(choice.labels)
    elif method == "leiden":
        log.info(f"Leiden clustering (resolution {resolution:g})")
        sc.tl.leiden(adata, resolution=resolution, key_added=key_added, random_state=seed,
                     neighbors_key=K.NEIGHBORS, **LEIDEN)
        labels = adata.obs[key_added].astype(str).to_numpy()
        merge_info = {"rule": OFF}
        if merge is not None:
            labels, merged = merge_clusters(adata, labels, K.NEIGHBORS, merge)
            log.info(merged.describe())
            merge_info = merged.record()
        adata.obs[key_added] = categorical(labels)
    saved = set_aside(adata)  # where the UMAP goes: `geovae.tools.umap_keys`
    settings = umap_settings(adata.n_obs, umap_epochs, rep.shape[1])
    try:
        if umap:
            log.info(f"UMAP of {adata.n_obs} cells ({settings.n_epochs} optimisation epochs, "
                     f"learning rate {settings.learning_rate:g}, {settings.negatives} negative "
                     f"samples, {settings.init} start)")
            run_umap(adata, rep, **settings._asdict(), seed=seed)
    except BaseException:
        put_back(adata, saved, computed=False)  # the user's UMAP keys back in place
        raise
    where = put_back(adata, saved, computed=umap)
    if umap:
        where.update(n_epochs=settings.n_epochs, negative_sample_rate=settings.negatives,
                     learning_rate=settings.learning_rate, init=settings.init)
    drop_fields(adata, "label_agreement")  # it scored earlier clusters
    update_record(adata, cluster={"method": method, "use_rep": use_rep,
                                  "resolution": None if isinstance(resolution, str)
                                  else float(resolution),
                                  "resolution_choice": choice.record() if choice else None,
                                  "merge": merge_info,
                                  "n_neighbors": int(n_neighbors), "metric": geometry,
                                  "n_clusters": int(adata.obs[key_added].nunique()),
                                  **knn_info}, umap=where)
    return adata


class UmapSettings(NamedTuple):
    """The UMAP's optimiser settings (`umap_settings`), the keywords of `run_umap`."""

    n_epochs: int
    negatives: int
    init: str
    learning_rate: float


def umap_settings(n_obs: int, umap_epochs: int | None, dims: int) -> UmapSettings:
    """The UMAP's epochs, negative samples, start and learning rate for ``n_obs`` cells of a
    ``dims``-dimensional embedding at ``umap_epochs`` (None: geovae's defaults by size; 0:
    umap-learn's defaults; N: N epochs at learning rate 1)."""
    rate = 1.0
    if umap_epochs is None and n_obs > CHEAP_UMAP_CELLS:
        umap_epochs, rate = LARGE_UMAP_EPOCHS, LARGE_UMAP_LEARNING_RATE
    elif umap_epochs is None:
        umap_epochs = UMAP_EPOCHS
    n_epochs = int(umap_epochs) or umap_learn_epochs(n_obs)
    init = UMAP_INIT if umap_epochs and dims >= 2 else "spectral"
    return UmapSettings(n_epochs, umap_negative_samples(n_obs, umap_epochs), init, rate)


def run_umap(adata: ad.AnnData, rep: np.ndarray, *, n_epochs: int, negatives: int, init: str,
             seed: int, learning_rate: float = 1.0) -> None:
    """scanpy's UMAP (``obsm['X_umap']``, ``uns['umap']``) from geovae's kNN graph, started
    from `umap_init` of ``rep`` for ``init="pca"``, at an initial ``learning_rate`` (scanpy's
    ``alpha``): what `cluster` runs (and
    benchmarks/bench_fixed_costs.py times). The UMAP gets a copy of the connectivities:
    umap-learn zeroes the edges it prunes in place, and the graph written must stay the one
    the clusters were cut on."""
    import scanpy as sc

    key = adata.uns[K.NEIGHBORS]["connectivities_key"]
    graph = adata.obsp[key]
    adata.obsp[key] = graph.copy()
    try:
        sc.tl.umap(adata, neighbors_key=K.NEIGHBORS, random_state=seed, maxiter=n_epochs,
                   negative_sample_rate=negatives, alpha=learning_rate,
                   init_pos=umap_init(rep, seed) if init == "pca" else init)
    finally:
        adata.obsp[key] = graph


def umap_negative_samples(n_obs: int, umap_epochs: int) -> int:
    """Negative samples of the UMAP's optimiser: `UMAP_NEGATIVE_SAMPLES` above
    `CHEAP_UMAP_CELLS` cells at geovae's epochs, umap-learn's 5 otherwise."""
    cheap = umap_epochs and n_obs > CHEAP_UMAP_CELLS
    return UMAP_NEGATIVE_SAMPLES if cheap else UMAP_LEARN_NEGATIVE_SAMPLES


def umap_init(rep: np.ndarray, seed: int = 0) -> np.ndarray:
    """The UMAP's starting layout: the embedding's first two principal components
    (scikit-learn's PCA; umap-learn rescales any start to [0, 10])."""
    from sklearn.decomposition import PCA

    return PCA(2, random_state=seed).fit_transform(np.asarray(rep, dtype=np.float64))


def umap_learn_epochs(n_obs: int) -> int:
    """umap-learn's (and scanpy's) default optimisation epochs for ``n_obs`` cells."""
    return 500 if n_obs <= 10000 else 200


def _scanpy_slot_free(adata: ad.AnnData) -> bool:
    """Whether scanpy's default graph keys (``uns['neighbors']``, ``obsp['connectivities']``,
    ``obsp['distances']``) hold nothing of the user's: empty, or geovae's own copy."""
    uns = adata.uns.get(K.SCANPY_NEIGHBORS)
    if uns is None and not {"connectivities", "distances"} & _obsp_keys(adata):
        return True
    return isinstance(uns, dict) and uns.get("geovae") is True


def _obsp_keys(adata: ad.AnnData) -> set[str]:
    """obsp keys in memory and, for a backed run, in the file (they stay on disk)."""
    from geovae.data.h5 import backed_path, is_backed

    keys = set(adata.obsp.keys())
    if is_backed(adata):
        import h5py

        with h5py.File(backed_path(adata), "r") as f:
            keys |= set(f["obsp"].keys()) if "obsp" in f else set()
    return keys


def _share_graph(adata: ad.AnnData) -> None:
    """geovae's kNN graph also under scanpy's default keys, marked as geovae's copy."""
    own = adata.uns[K.NEIGHBORS]
    adata.uns[K.SCANPY_NEIGHBORS] = {
        **{k: v for k, v in own.items() if k not in ("connectivities_key", "distances_key")},
        "connectivities_key": "connectivities", "distances_key": "distances", "geovae": True}
    adata.obsp["connectivities"] = adata.obsp[f"{K.NEIGHBORS}_connectivities"]
    adata.obsp["distances"] = adata.obsp[f"{K.NEIGHBORS}_distances"]


def categorical(labels: np.ndarray) -> Any:
    """Categorical with naturally sorted categories ("2" before "10")."""
    import pandas as pd
    from natsort import natsorted

    return pd.Categorical(labels, categories=natsorted(set(labels)))


def geometry_of(adata: ad.AnnData, use_rep: str) -> str:
    """The latent geometry of ``obsm[use_rep]`` as the run record says (else euclidean)."""
    if use_rep != K.REP:
        return "euclidean"
    info = adata.uns.get(K.UNS, {})
    latent = info.get("latent", {}) if isinstance(info, dict) else {}
    return str(latent.get("geometry", "euclidean"))
