"""Leiden at other resolutions on the kNN graphs that saved geovae outputs hold: ARI and NMI
against a label column, clusters found, and the latent's per-dimension sd (how many active
dimensions hold the types). For outputs of `bench_vs_scvi.py` (``--work``'s
``geovae_s{seed}.h5ad``), e.g. the 100k-cell run, where resolution 1 cut the types::

    python benchmarks/leiden_on_saved.py /tmp/vs_100k/geovae_s*.h5ad --label cell_type \\
        --resolutions 0.3 0.4 0.5 0.6 0.7 1.0 --json leiden_on_saved.jsonl

The seed of each file (its ``uns['geovae']['seed']``) seeds its Leiden, as `geovae fit` does.
Outputs written before 2026-12-06 21:10 hold the graph after the UMAP zeroed its pruned
edges (geovae's `run_umap` now gives the UMAP a copy): their resolution-1 clusters need not
be the written ones; each line says how many edges were zeroed (``zeroed_edges``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", type=Path, nargs="+", help="geovae output .h5ad files")
    ap.add_argument("--label", required=True, help="obs column with the true labels")
    ap.add_argument("--resolutions", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--json", type=Path, default=None, help="append one line per file")
    args = ap.parse_args()
    import anndata as ad
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from geovae import _keys as K
    from geovae.tools.resolution import LEIDEN

    for path in args.files:
        a = ad.read_h5ad(path)
        if args.label not in a.obs or K.NEIGHBORS not in a.uns:
            print(f"error: {path}: no obs['{args.label}'] or no geovae kNN graph; give a "
                  "geovae output and its label column", file=sys.stderr)
            sys.exit(2)
        seed = int(a.uns[K.UNS].get("seed", 0))
        graph = a.obsp[a.uns[K.NEIGHBORS]["connectivities_key"]]
        labels = a.obs[args.label].astype(str).to_numpy()
        rec = {"file": str(path), "seed": seed, "cells": int(a.n_obs),
               "zeroed_edges": int((graph.data == 0).sum()),
               "latent_sd": [round(float(s), 3) for s in np.asarray(a.obsm[K.REP]).std(0)],
               "written": {"ari": adjusted_rand_score(labels, a.obs[K.CLUSTER]),
                           "clusters": int(a.obs[K.CLUSTER].nunique())}, "leiden": {}}
        for r in args.resolutions:
            sc.tl.leiden(a, resolution=r, random_state=seed, key_added="again",
                         neighbors_key=K.NEIGHBORS, **LEIDEN)
            found = a.obs["again"].to_numpy()
            rec["leiden"][str(r)] = {"ari": adjusted_rand_score(labels, found),
                                     "nmi": normalized_mutual_info_score(labels, found),
                                     "clusters": int(len(set(found)))}
        print(json.dumps(rec), flush=True)
        if args.json is not None:
            with args.json.open("a") as f:
                f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
