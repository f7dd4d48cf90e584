"""UMAP settings on one latent: CPU time and what the picture keeps (docs/speed.md, "UMAP").

Run:  OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_umap.py [--cells 20000] [--genes 2000]
          [--epochs 10] [--seeds 0 1] [--data-seed 0] [--settings 100:2:spectral 100:2:pca]
          [--json FILE]

Trains a VAE (defaults, batch key ``condition``) for ``--epochs`` epochs on `simulate_counts`
(8 types, 2 conditions, ``--data-seed``), builds geovae's kNN graph of its latent once, then runs
``sc.tl.umap`` from that graph for each (optimisation epochs, negative samples) setting and
seed, and reports its CPU seconds (one thread: umap-learn's seeded optimiser is serial) and,
on 2,000 random cells: sklearn's trustworthiness (latent -> UMAP, k = 15), the share of a
cell's 15 latent neighbours among its 15 UMAP neighbours, the true types' silhouette on
the UMAP, and the global structure kept: the Spearman correlation of the distances between the
types' centroids in the latent and on the UMAP (Kobak & Linderman 2021's measure of what the
initialisation decides). A setting's third part is the initialisation: ``spectral`` (scanpy's
default) or ``pca`` (the latent's first two principal components, geovae's `umap_init`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import load_average  # noqa: E402

import geovae  # noqa: E402,F401  (before torch: the OpenMP wait policy)

#: (optimisation epochs, negative samples); 0 epochs: umap-learn's by size
SETTINGS = [(0, 5), (100, 5), (100, 2), (50, 5), (50, 2)]


def picture_scores(z: np.ndarray, emb: np.ndarray, types: np.ndarray, sub: np.ndarray
                   ) -> dict[str, float]:
    from sklearn.manifold import trustworthiness
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import NearestNeighbors

    near_z = NearestNeighbors(n_neighbors=16).fit(z).kneighbors(z[sub], return_distance=False)
    near_e = NearestNeighbors(n_neighbors=16).fit(emb).kneighbors(emb[sub],
                                                                  return_distance=False)
    kept = np.mean([len(set(a[1:]) & set(b[1:])) / 15 for a, b in zip(near_z, near_e,
                                                                          strict=True)])
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    labels = np.unique(types)
    cz = np.stack([z[types == t].mean(0) for t in labels])
    ce = np.stack([emb[types == t].mean(0) for t in labels])
    return {"trustworthiness": float(trustworthiness(z[sub], emb[sub], n_neighbors=15)),
            "knn_kept": float(kept), "silhouette": float(silhouette_score(emb[sub], types[sub])),
            "centroid_spearman": float(spearmanr(pdist(cz), pdist(ce))[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--json", type=Path, default=None, help="append records (JSON lines)")
    ap.add_argument("--data-seed", type=int, default=0,
                    help="the simulation's seed (0 chose geovae's UMAP settings: development)")
    ap.add_argument("--settings", nargs="+", default=None, metavar="EPOCHS:NEGATIVES[:INIT]",
                    help="(optimisation epochs, negative samples, initialisation) to run "
                         "instead of SETTINGS, e.g. 100:2:pca 70:2 (0 epochs: umap-learn's by "
                         "size; INIT spectral (default) or pca)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import scanpy as sc
    import torch

    from geovae import _keys as K
    from geovae.datasets import simulate_counts
    from geovae.models import GeoVAE
    from geovae.tools.cluster import cluster, umap_init, umap_learn_epochs

    torch.set_num_threads(1)
    adata = simulate_counts(n_cells=args.cells, n_genes=args.genes, n_types=8,
                            n_conditions=2, seed=args.data_seed)
    model = GeoVAE(adata, batch_key="condition", seed=0)
    model.train(epochs=args.epochs, progress=False, patience=10**9)
    z = model.get_latent()
    types = adata.obs["cell_type"].astype(str).to_numpy()
    adata.obsm[K.REP] = z
    cluster(adata, use_rep=K.REP, umap=False, seed=0)  # the graph (and numba's first calls)
    sub = np.random.default_rng(0).choice(adata.n_obs, min(2000, adata.n_obs), replace=False)
    print(f"{args.cells} cells, latent of {args.epochs} epochs; load {load_average(3)}")
    print(f"{'epochs':>6} {'neg':>4} {'init':>8} {'seed':>4} {'CPU s':>6} {'trust':>7} "
          f"{'kNN kept':>8} {'silh.':>6} {'global':>6}")
    settings = [(*s.split(":"), "spectral")[:3] if isinstance(s, str) else (*s, "spectral")
                for s in (args.settings or SETTINGS)]
    for epochs, negatives, init in settings:
        epochs, negatives = int(epochs), int(negatives)
        n_epochs = epochs or umap_learn_epochs(adata.n_obs)
        for seed in args.seeds:
            cpu = time.process_time()
            init_pos = "spectral"
            if init == "pca":
                adata.obsm["X_umap_init"] = umap_init(z)
                init_pos = "X_umap_init"
            sc.tl.umap(adata, neighbors_key=K.NEIGHBORS, random_state=seed, maxiter=n_epochs,
                       negative_sample_rate=negatives, init_pos=init_pos)
            cpu = time.process_time() - cpu
            r = {"cells": args.cells, "data_seed": args.data_seed, "epochs": n_epochs,
                 "negative_sample_rate": negatives, "init": init,
                 "seed": seed, "cpu_s": round(cpu, 2), "load": load_average(3),
                 **picture_scores(z, np.asarray(adata.obsm["X_umap"]), types, sub)}
            print(f"{n_epochs:6d} {negatives:4d} {init:>8} {seed:4d} {cpu:6.2f} "
                  f"{r['trustworthiness']:7.4f} {r['knn_kept']:8.4f} {r['silhouette']:6.3f} "
                  f"{r['centroid_spearman']:6.3f}", flush=True)
            if args.json:
                with args.json.open("a") as fh:
                    fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
