"""How the c*GMΔVAE's start resolution was chosen (issue 24): development draws only, nothing
reported from them. ``capture DATA SEED`` fits the default c*GMΔVAE (main cd89b68: Leiden
start at resolution 1) up to the mixture's start and saves the pretrained posterior means of
the start's cells with their labels; ``evaluate`` clusters each saved latent with the start's
Leiden (`leiden_labels`, the draw's seed) at resolutions 0.25-2 and prints per resolution the
clusters, the start's ARI against the labels and `icl` of the means. Record:
clusters_startres_offline_dev_2026-12-07.jsonl (captures: baron_mouse 10 11, kang_stim 0 1,
kang 0-2, pbmc68k 0 1, digits 0-2, hard 0-2, medium 0, blobs 0-2; K 15, the default 20 on
baron_mouse and kang_stim).

    cd benchmarks/results && OMP_NUM_THREADS=1 python \
        clusters_startres_offline_dev_2026-12-07.py capture baron_mouse 10
    python clusters_startres_offline_dev_2026-12-07.py evaluate
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import geovae  # before torch (OpenMP settings)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
FOLDER = Path("startres_captures")
RESOLUTIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


class _Stop(Exception):
    pass


def capture(data: str, seed: int) -> None:
    import numpy as np

    from geovae.modules import mixture_start as ms
    from geovae.modules.deletion import seeded_subsample

    box: dict = {}

    def start(module, source, idx, fit_seed):  # noqa: ANN001 - the replaced hook's arguments
        box["sub"] = seeded_subsample(idx, ms.START_CELLS, fit_seed).cpu().numpy()
        box["means"] = ms.latent_draws(module, source, idx, fit_seed)[0].numpy()
        box["k"] = module.n_clusters
        raise _Stop

    ms.start_mixture = start
    if data in ("baron_mouse", "kang_stim"):
        import bench_donors

        a, batch, truth = bench_donors.draw(data, seed)
        fit, opts = {"batch_key": batch}, {}
    else:
        from cluster_sets import load

        a, kw, truth = load(data, seed)
        fit, opts = {"batch_key": "condition", **kw}, {"n_clusters": 15}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            geovae.fit(a, model="cgmvae", model_options=opts, seed=seed, progress=False,
                       device="cpu", heldout_samples=0, **fit)
        except _Stop:
            pass
    FOLDER.mkdir(exist_ok=True)
    np.savez(FOLDER / f"{data}_{seed}.npz", means=box["means"], k=box["k"],
             truth=a.obs[truth].astype(str).to_numpy()[box["sub"]])


def evaluate() -> None:
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from geovae.modules.mixture_start import icl, leiden_labels

    for path in sorted(FOLDER.glob("*.npz")):
        saved = np.load(path, allow_pickle=True)
        data, seed = path.stem.rsplit("_", 1)
        row: dict = {"data": data, "seed": int(seed)}
        for r in RESOLUTIONS:
            labels = leiden_labels(saved["means"], int(saved["k"]), int(seed), r)
            row[str(r)] = {"clusters": int(labels.max() + 1),
                           "ari": round(adjusted_rand_score(saved["truth"], labels), 3),
                           "icl": round(icl(saved["means"], labels), 1)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "capture":
        capture(sys.argv[2], int(sys.argv[3]))
    else:
        evaluate()
