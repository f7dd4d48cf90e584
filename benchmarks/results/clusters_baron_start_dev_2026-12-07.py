"""The c*GMΔVAE's start rule on the real multi-donor Baron mouse islets (issue 24 items 1 and 4):
development draws only (seeds 10, 11; nothing reported from them). Per seed: the VAE + Leiden
(scanpy Leiden, resolution 1, on ``X_geovae``), the default c*GMΔVAE (Leiden start) and the
same with ``mixture_start="gmm"``: the argmax ARI, components in use, and Leiden on each latent.
Record: clusters_baron_start_dev_2026-12-07.jsonl (main 49ab6c8, one thread, 2026-12-07 21:06).

    OMP_NUM_THREADS=1 python benchmarks/results/clusters_baron_start_dev_2026-12-07.py 10
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import geovae  # before torch (OpenMP settings)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(seed: int) -> None:
    import bench_donors
    import numpy as np
    from cluster_sets import leiden
    from sklearn.metrics import adjusted_rand_score as ari

    out: dict = {"data": "baron_mouse", "seed": seed}
    for name, model, opts in (("vae", "vae", {}), ("cg_leiden", "cgmvae", {}),
                              ("cg_gmm", "cgmvae", {"mixture_start": "gmm"})):
        a, batch, truth = bench_donors.draw("baron_mouse", seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            geovae.fit(a, model=model, model_options=opts, seed=seed, progress=False,
                       device="cpu", heldout_samples=0, batch_key=batch)
        y = a.obs[truth].to_numpy()
        out[f"{name}_leiden"] = round(ari(y, leiden(a, "X_geovae", seed)), 3)
        out[f"{name}_epochs"] = len(a.uns["geovae"]["loss_history"]["validation"])
        if model == "cgmvae":
            pred = a.obsm["geovae_cluster_probs"].argmax(1)
            out[f"{name}_argmax"] = round(ari(y, pred), 3)
            out[f"{name}_used"] = int(len(np.unique(pred)))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
