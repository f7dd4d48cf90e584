"""One rank of `test_distributed`'s DDP run, started by torchrun (`torch.distributed.run`):
trains the test's small model with the process group the trainer creates from torchrun's
environment, then saves what the test compares (``python ddp_worker.py OUT_DIR``;
``python ddp_worker.py OUT_DIR cgmvae``: a c*GMΔVAE without warm start, saving its gamma)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import torch

from geovae.models import GeoVAE

WORLD, EPOCHS, BATCH, N_CELLS = 2, 5, 32, 240


def data() -> ad.AnnData:
    rng = np.random.default_rng(0)
    return ad.AnnData(rng.poisson(2.0, size=(N_CELLS, 30)).astype(np.float32))


def model() -> GeoVAE:
    return GeoVAE(data(), latent="euclidean", latent_dim=3, n_hidden=32, seed=0)


def mixture_gamma(out: Path, rank: int) -> None:
    from geovae.models import CGMVAE

    m = CGMVAE(data(), latent_dim=3, n_hidden=32, seed=0,
               model_options={"n_clusters": 4, "warm_start": 0.0, "hold": 0.0})
    trained, after = {}, m.module.after_training

    def keep_then_finish(*args: object) -> None:  # gamma as the steps left it
        trained["gamma"] = m.module.gamma.detach().clone().numpy()
        after(*args)

    m.module.after_training = keep_then_finish
    m.train(epochs=3, batch_size=BATCH, device="cpu", progress=False, warmup_fraction=0.0)
    np.savez(out / f"gamma{rank}.npz", gamma=trained["gamma"])


def main(out: Path, what: str = "vae") -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    if what == "cgmvae":
        return mixture_gamma(out, rank)
    m = model()
    hist = m.train(epochs=EPOCHS, batch_size=BATCH, device="cpu", progress=False)
    params = torch.cat([p.detach().flatten() for p in m.module.parameters()])
    np.savez(out / f"rank{rank}.npz", latent=m.get_latent(), params=params.numpy(),
             train=hist.train, val=hist.validation, best=hist.best_epoch)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])
