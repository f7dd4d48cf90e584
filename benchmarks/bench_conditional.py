"""Conditional c*GMΔVAE: is the latent corrected for the condition, and are the types kept?

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_conditional.py --data blobs sim kang \
        --configs old prior_off new vae --seeds 0 1 2 [--epochs-blobs 40] [--json out.jsonl]

Data (condition = batch_key, type = truth, never shown to the models):

* ``blobs``: `geovae.datasets.make_blobs` (2000 cells, 50 features, 5 blobs, 3 conditions,
  condition shift 2 > blob scale 1), Gaussian likelihood, latent_dim 4, K = 5;
* ``sim``: `geovae.datasets.simulate_counts` with strong conditions (2000 cells, 500 genes,
  5 types, 3 conditions, condition_effect 1.5 on 30 % of genes), NB, latent_dim 10, K = 5;
* ``kang``: ``data/kang_counts.h5ad`` (3000 PBMCs x 2000 genes, ``stim`` CTRL / STIM,
  10 ``seurat_annotations``), NB, latent_dim 10, K = 10.

Configurations (``model_options`` of ``model="cgmvae"``; all use the batch key):

* ``old``: geovae 0.1.0's defaults: ``condition_prior``, ``encode_covariates``, per-cell d,
  alpha 1;
* ``prior_off``: as old without ``condition_prior``;
* ``new``: the defaults now (decoder-only covariates, global weights q(π) = Dir(β),
  alpha = 1/K);
* ``new_enc``: new with ``encode_covariates``;
* ``new_per_cell``: new with per-cell d (alpha 1);
* ``vae``: the plain VAE (``model="vae"``) with the same batch key (covariates in encoder and
  decoder).

Metrics on ``obsm["X_geovae"]`` with scib-metrics (``pip install scib-metrics``, or the
``bench`` extra): mixing — iLISI (scaled to [0, 1]), kBET (per label), batch ASW;
conservation — cell-type ASW, NMI and ARI of k-means on the latent (scib's
``nmi_ari_cluster_labels_kmeans``); plus the same-condition fraction of each cell's 15 nearest
neighbours (1 / n_conditions when fully mixed) and the ARI of the mixture's argmax
(``obsm["geovae_cluster_probs"]``) against the types.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

CONFIGS: dict[str, dict[str, Any]] = {
    "old": {"condition_prior": True, "encode_covariates": True, "mixture_weights": "per_cell",
            "dirichlet_alpha": 1.0, "cluster_samples": 0},
    "prior_off": {"condition_prior": False, "encode_covariates": True,
                  "mixture_weights": "per_cell", "dirichlet_alpha": 1.0, "cluster_samples": 0},
    "new": {},
    "new_enc": {"encode_covariates": True},
    "new_per_cell": {"mixture_weights": "per_cell", "dirichlet_alpha": 1.0},
    "vae": {},
}


def load(name: str, seed: int) -> tuple[Any, dict[str, Any], str, str]:
    """(adata, fit kwargs, condition key, type key)."""
    import anndata as ad

    from geovae.datasets import make_blobs, simulate_counts

    if name == "blobs":
        a = make_blobs(n_cells=2000, seed=seed)
        return a, {"likelihood": "gaussian", "latent_dim": 4, "n_clusters": 5,
                   "epochs": 40}, "condition", "blob"
    if name == "sim":
        a = simulate_counts(n_cells=2000, n_genes=500, n_types=5, n_conditions=3,
                            condition_effect=1.5, condition_prob=0.3, seed=seed)
        return a, {"likelihood": "nb", "latent_dim": 10, "n_clusters": 5,
                   "epochs": 60}, "condition", "cell_type"
    if name == "kang":
        a = ad.read_h5ad(ROOT / "data" / "kang_counts.h5ad")
        return a, {"likelihood": "nb", "latent_dim": 10, "n_clusters": 10,
                   "epochs": 40}, "stim", "seurat_annotations"
    raise ValueError(name)


def same_condition_fraction(z: np.ndarray, cond: np.ndarray, k: int = 15) -> float:
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    return float((cond[idx[:, 1:]] == cond[:, None]).mean())


def scib_scores(z: np.ndarray, cond: np.ndarray, types: np.ndarray) -> dict[str, float]:
    """scib-metrics' mixing and conservation scores (NaN where the package is missing)."""
    try:
        import scib_metrics
        from scib_metrics.nearest_neighbors import NeighborsResults
    except ImportError:
        return {}
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=90).fit(z).kneighbors(z)
    nn = NeighborsResults(indices=idx, distances=dist)
    out = {"ilisi": float(scib_metrics.ilisi_knn(nn, cond)),
           "batch_asw": float(scib_metrics.silhouette_batch(z, types, cond)),
           "type_asw": float(scib_metrics.silhouette_label(z, types))}
    try:
        out["kbet"] = float(scib_metrics.kbet_per_label(nn, cond, types))
    except Exception as exc:  # kBET fails on tiny or degenerate groups
        out["kbet"] = float("nan")
        print("kBET failed:", exc)
    out.update({f"kmeans_{k}": float(v) for k, v in
                scib_metrics.nmi_ari_cluster_labels_kmeans(z, types).items()})
    return out


def run(data: str, config: str, seed: int, epochs: int | None = None) -> dict[str, Any]:
    from sklearn.metrics import adjusted_rand_score

    import geovae

    adata, kw, ckey, tkey = load(data, seed)
    kw = dict(kw)
    n_clusters = kw.pop("n_clusters")
    ep = epochs or kw.pop("epochs")
    kw.pop("epochs", None)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config == "vae":
            geovae.fit(adata, model="vae", batch_key=ckey, epochs=ep, progress=False,
                       seed=seed, device="cpu", **kw)
        else:
            opts = {"n_clusters": n_clusters, **CONFIGS[config]}
            geovae.fit(adata, model="cgmvae", batch_key=ckey, model_options=opts, epochs=ep,
                       progress=False, seed=seed, device="cpu", **kw)
    seconds = time.perf_counter() - t0
    z = np.asarray(adata.obsm["X_geovae"], dtype=np.float64)
    cond = adata.obs[ckey].cat.codes.to_numpy()
    types = adata.obs[tkey].astype("category").cat.codes.to_numpy()
    rec: dict[str, Any] = {"data": data, "config": config, "seed": seed, "epochs": ep,
                           "seconds": round(seconds, 1),
                           "same_condition": same_condition_fraction(z, cond),
                           "chance": float(((np.bincount(cond) / len(cond)) ** 2).sum())}
    if "geovae_cluster_probs" in adata.obsm:
        probs = adata.obsm["geovae_cluster_probs"]
        info = adata.uns["geovae"]
        rec.update(mixture_ari=float(adjusted_rand_score(types, probs.argmax(1))),
                   n_used=int(info["n_components_used"]),
                   n_argmax=int(info.get("n_components_argmax", -1)))
    rec.update(scib_scores(z, cond, types))
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=["blobs", "sim", "kang"])
    ap.add_argument("--configs", nargs="+", default=["old", "prior_off", "new", "vae"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override every data set's")
    ap.add_argument("--json", type=Path, default=None, help="append records (JSON lines)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for data in args.data:
        for config in args.configs:
            for seed in args.seeds:
                rec = run(data, config, seed, args.epochs)
                line = json.dumps(rec)
                print(line, flush=True)
                if args.json:
                    with args.json.open("a") as fh:
                        fh.write(line + "\n")


if __name__ == "__main__":
    main()
