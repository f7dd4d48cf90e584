"""Issue 9.1 on real data: is X_geovae corrected for the condition on the bundled Kang
subset, and are the cell types kept? The c*GMΔVAE as geovae 0.1.0 had it (``old``: covariates
in the mixture prior, per-cell weights), today's defaults (``new``) and the plain VAE with
the same batch key (``vae``), paired by seed.

Run (repo root)::

    OMP_NUM_THREADS=1 python benchmarks/bench_conditional_kang.py --seeds 0 1 2 --epochs 40 \
        --json kang.jsonl

Data: ``data/kang_counts.h5ad`` (3,000 PBMCs x 2,000 genes, ``stim`` CTRL / STIM as the
batch key, ten ``seurat_annotations`` types never shown to the models), NB likelihood,
latent_dim 10, K = 15 components (an upper bound). Scores on ``obsm['X_geovae']`` with
`geovae.tools.mixing.integration_scores` (scIB's definitions, checked against scib-metrics in
tests/tools/test_mixing.py): iLISI, kBET, batch ASW (mixing), cell-type ASW, k-means NMI/ARI
(conservation), plus the same-condition share of each cell's 15 nearest neighbours and the
ARI of the mixture's argmax against the types.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

import geovae
from geovae.tools.mixing import integration_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, emit  # noqa: E402

CONFIGS = {"old": {"condition_prior": True, "mixture_weights": "per_cell",
                   "dirichlet_alpha": 1.0, "cluster_samples": 0},
           "new": {}, "vae": None}


def same_condition(z: np.ndarray, cond: np.ndarray, k: int = 15) -> float:
    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    return float((cond[idx[:, 1:]] == cond[:, None]).mean())


def run(config: str, seed: int, epochs: int) -> dict:
    a = ad.read_h5ad(ROOT / "data" / "kang_counts.h5ad")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if CONFIGS[config] is None:
            geovae.fit(a, model="vae", batch_key="stim", latent_dim=10, epochs=epochs,
                       seed=seed, progress=False, device="cpu")
        else:
            geovae.fit(a, model="cgmvae", batch_key="stim", latent_dim=10, epochs=epochs,
                       seed=seed, progress=False, device="cpu",
                       model_options={"n_clusters": 15, **CONFIGS[config]})
    z = np.asarray(a.obsm["X_geovae"], dtype=np.float64)
    cond = a.obs["stim"].astype("category").cat.codes.to_numpy()
    types = a.obs["seurat_annotations"].astype(str).to_numpy()
    rec = {"config": config, "seed": seed, "epochs": epochs,
           "seconds": round(time.perf_counter() - t0, 1),
           "same_condition": same_condition(z, cond),
           "chance": float(((np.bincount(cond) / len(cond)) ** 2).sum()),
           **integration_scores(z, a.obs["stim"].to_numpy(), types)}
    if "geovae_cluster_probs" in a.obsm:
        rec["mixture_ari"] = float(adjusted_rand_score(types,
                                                       a.obsm["geovae_cluster_probs"].argmax(1)))
        rec["n_argmax"] = int(a.uns["geovae"]["n_components_argmax"])
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for seed in args.seeds:
        for config in args.configs:
            rec = run(config, seed, args.epochs)
            emit({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()},
                 args.json)


if __name__ == "__main__":
    main()
