"""Do scVI's training choices let the c*GMΔVAE mix Baron mouse's donors within types as scVI
does (issue 24 item 4)? Development draws only (seeds 10, 11; nothing reported from them;
2026-12-08, main 10d5bb8). Variants of the default c*GMΔVAE: ``noes`` (early stopping off:
all 400 epochs) and ``enc_noes`` (also the encoder's batch columns zeroed, scVI's
``encode_covariates=False``); scores of `bench_donors.scores` on its latent and argmax
clusters. The default on these draws: donors_warmup_dev_2026-12-07.jsonl (warmup 0.25).

    OMP_NUM_THREADS=1 python benchmarks/results/donors_scvirecipe_dev_2026-12-08.py SEED VARIANT
"""
import json
import sys
import warnings
from pathlib import Path

import geovae  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_donors  # noqa: E402
import torch

from geovae import CGMVAE
from geovae.modules.vae import VAEModule

seed, variant = int(sys.argv[1]), sys.argv[2]
if "enc" in variant:
    for name in ("hidden", "hidden_of"):
        if hasattr(VAEModule, name):
            orig = getattr(VAEModule, name)
            def zeroed(self, x, c, _m=orig):
                return _m(self, x, None if c is None else torch.zeros_like(c))
            setattr(VAEModule, name, zeroed)
settings = {"patience": 10**6} if "noes" in variant else {}
a, batch, truth = bench_donors.draw("baron_mouse", seed)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model = CGMVAE(a, batch_key=batch, seed=seed)
    model.train(device="cpu", progress=False, **settings)
    pred = model.get_cluster_probs().argmax(1).astype(str)
    latent = model.get_latent()
types, donors = (a.obs[k].to_numpy().astype(str) for k in (truth, batch))
out = {"data": "baron_mouse", "seed": seed, "variant": variant,
       "epochs": len(model.history.train), **bench_donors.scores(latent, pred, types, donors)}
out.pop("per_type", None)
print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}),
      flush=True)
