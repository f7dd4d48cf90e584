"""Does a longer KL warm-up let the c*GMΔVAE mix Baron mouse's donors within types as scVI
does (issue 24 item 4)? Development draws only (seeds 10, 11; nothing reported from them):
the default c*GMΔVAE (KL warm-up over the first 25 % of the steps) and the same with
``warmup_fraction`` 0.5 (the whole pretraining) and 1.0 (scVI's: all of training); the
scores of `bench_donors.scores` on its latent and argmax clusters.

    OMP_NUM_THREADS=1 python benchmarks/results/donors_warmup_dev_2026-12-07.py SEED
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import geovae  # noqa: F401 - before torch (OpenMP settings)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(seed: int) -> None:
    import bench_donors

    from geovae import CGMVAE

    for fraction in (0.25, 0.5, 1.0):
        a, batch, truth = bench_donors.draw("baron_mouse", seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = CGMVAE(a, batch_key=batch, seed=seed)
            model.train(device="cpu", progress=False, warmup_fraction=fraction)
            pred = model.get_cluster_probs().argmax(1).astype(str)
            latent = model.get_latent()
        out = {"data": "baron_mouse", "seed": seed, "warmup_fraction": fraction,
               "epochs": len(model.history.train),
               **bench_donors.scores(latent, pred, a.obs[truth].to_numpy().astype(str),
                                     a.obs[batch].to_numpy().astype(str))}
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                          for k, v in out.items()}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
