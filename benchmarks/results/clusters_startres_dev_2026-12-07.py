"""The c*GMΔVAE's start resolution chosen by ICL (issue 24 items 1 and 4): development draws
only (nothing reported from them). Per data set and seed: the default fit (Leiden start at
the resolution of `START_RESOLUTIONS` with the best ICL) and the same with resolution 1 only
(the rule before): argmax ARI against the labels, components in use, the resolution chosen.
Record: clusters_startres_dev_2026-12-07.jsonl (2 shared cores, one thread each).

    OMP_NUM_THREADS=1 python benchmarks/results/clusters_startres_dev_2026-12-07.py DATA SEED
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import geovae  # before torch (OpenMP settings)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(data: str, seed: int) -> None:
    from sklearn.metrics import adjusted_rand_score as ari

    from geovae.modules import mixture_start

    out: dict = {"data": data, "seed": seed}
    for name, grid in (("icl", mixture_start.START_RESOLUTIONS), ("res1", (1.0,))):
        mixture_start.START_RESOLUTIONS = grid
        if data == "baron_mouse":
            import bench_donors

            a, batch, truth = bench_donors.draw(data, seed)
            fit, opts = {"batch_key": batch}, {}
        else:
            from cluster_sets import load

            a, kw, truth = load(data, seed)
            fit = {"batch_key": "condition", **kw}
            opts = {} if data == "kang_full" else {"n_clusters": 15}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            geovae.fit(a, model="cgmvae", model_options=opts, seed=seed, progress=False,
                       device="cpu", heldout_samples=0, **fit)
        pred = a.obsm["geovae_cluster_probs"].argmax(1)
        out[f"{name}_ari"] = round(ari(a.obs[truth].to_numpy(), pred), 3)
        out[f"{name}_used"] = int(a.uns["geovae"]["n_components_argmax"])
        out[f"{name}_res"] = a.uns["geovae"].get("start_resolution")
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
