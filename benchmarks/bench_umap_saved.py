"""UMAP settings on saved fits: CPU time and what the picture keeps, paired against a baseline.

Run:  OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_umap_saved.py OUT.h5ad [OUT.h5ad ...]
          [--settings 100:1:pca:1 70:1:pca:1.43] [--seeds 0 1 2] [--label-key KEY]
          [--set NAME] [--json FILE]

For each saved `geovae fit` output (``obsm['X_geovae']``), builds geovae's kNN graph of the
latent as `geovae.tools.cluster` does (15 neighbours, the latent's own metric, exact up to
50,000 cells), then runs the UMAP as `cluster` runs it (`run_umap`: the PCA start, umap-learn's
seeded serial optimiser) for each setting EPOCHS:NEGATIVES[:INIT[:LEARNING_RATE]] and seed,
and scores it with `bench_umap.picture_scores` on 2,000 random cells: trustworthiness (k = 15),
the share of latent neighbours kept, the labels' silhouette on the UMAP and the Spearman
correlation of the labels' centroid distances (latent vs UMAP). Labels: ``--label-key``, else
the first of cell_type, seurat_annotations, bulk_labels, geovae_cluster the file holds. The
settings are compared with the first one, paired over (file, seed), in `paired_stats.paired`.
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
from bench_umap import picture_scores  # noqa: E402
from paired_stats import paired  # noqa: E402

import geovae  # noqa: E402,F401  (before torch: the OpenMP wait policy)

LABEL_KEYS = ("cell_type", "seurat_annotations", "bulk_labels", "geovae_cluster")
METRICS = ("cpu_s", "trustworthiness", "knn_kept", "silhouette", "centroid_spearman")


def parse_setting(text: str) -> tuple[int, int, str, float]:
    """EPOCHS:NEGATIVES[:INIT[:LEARNING_RATE]] -> (epochs, negatives, init, learning rate)."""
    parts = text.split(":")
    init = parts[2] if len(parts) > 2 else "pca"
    return int(parts[0]), int(parts[1]), init, float(parts[3]) if len(parts) > 3 else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--settings", nargs="+", default=["100:1:pca:1", "70:1:pca:1.43"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--label-key", default=None)
    ap.add_argument("--set", default="", help="a name for the records (e.g. dev-sim20k)")
    ap.add_argument("--json", type=Path, default=None, help="append records (JSON lines)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import anndata as ad
    import torch

    from geovae import _keys as K
    from geovae.tools.cluster import cluster, run_umap

    torch.set_num_threads(1)
    settings = [parse_setting(s) for s in args.settings]
    rows: list[dict] = []
    for path in args.files:
        adata = ad.read_h5ad(path)
        key = args.label_key or next(k for k in LABEL_KEYS if k in adata.obs)
        labels = adata.obs[key].astype(str).to_numpy()
        adata = ad.AnnData(np.zeros((adata.n_obs, 1), np.float32), obs=adata.obs[[key]],
                           obsm={K.REP: np.asarray(adata.obsm[K.REP])}, uns=adata.uns)
        cluster(adata, use_rep=K.REP, umap=False, seed=0, merge=None, key_added="_graph")
        z = adata.obsm[K.REP]
        sub = np.random.default_rng(0).choice(adata.n_obs, min(2000, adata.n_obs),
                                              replace=False)
        print(f"{path} ({adata.n_obs} cells, labels {key}); load {load_average(3)}", flush=True)
        for epochs, negatives, init, rate in settings:
            for seed in args.seeds:
                cpu = time.process_time()
                run_umap(adata, z, n_epochs=epochs, negatives=negatives, init=init, seed=seed,
                         learning_rate=rate)
                cpu = time.process_time() - cpu
                r = {"set": args.set, "file": str(path), "cells": adata.n_obs, "labels": key,
                     "setting": f"{epochs}:{negatives}:{init}:{rate:g}", "seed": seed,
                     "cpu_s": round(cpu, 3), "load": load_average(3),
                     **picture_scores(z, np.asarray(adata.obsm["X_umap"]), labels, sub)}
                rows.append(r)
                print(f"  {r['setting']:>16} seed {seed}: CPU {cpu:5.2f} s, trust "
                      f"{r['trustworthiness']:.4f}, kNN kept {r['knn_kept']:.4f}, silhouette "
                      f"{r['silhouette']:.3f}, global {r['centroid_spearman']:.3f}", flush=True)
                if args.json:
                    with args.json.open("a") as fh:
                        fh.write(json.dumps(r) + "\n")
    base = rows[0]["setting"]
    print(f"\npaired over (file, seed) against {base}: mean difference (sd), t-test p")
    for name in dict.fromkeys(r["setting"] for r in rows):
        if name == base:
            continue
        cells = ", ".join(f"{m} {_diff(rows, name, base, m)}" for m in METRICS)
        print(f"  {name}: {cells}")


def _diff(rows: list[dict], name: str, base: str, metric: str) -> str:
    """The paired difference ``name - base`` of ``metric`` over (file, seed)."""
    at = {(r["file"], r["seed"]): r[metric] for r in rows if r["setting"] == base}
    pairs = [(r[metric], at[(r["file"], r["seed"])]) for r in rows if r["setting"] == name]
    if len(pairs) < 2:
        return "n/a"
    p = paired([a for a, _ in pairs], [b for _, b in pairs])
    return f"{p['diff']:+.4f} ({p['sd']:.4f}) p {p['p_t']:.2g}"


if __name__ == "__main__":
    main()
