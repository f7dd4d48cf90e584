"""Why the c*GMΔVAE's clusters trail the VAE + Leiden on digits (issue 24 item 1): development
runs only (digits and hard seeds 0-2, kang_full seeds 0-2; nothing here is a reported number).
Record: clusters_pretrain_dev_2026-12-07.jsonl (``experiment`` names the run, ``what`` says it).
This file is a cleaned copy of the three scratch scripts that ran (same fits, same readouts;
their ``diag2`` / ``diag3`` lines call the Leiden ARI ``leiden`` and the argmax ``argmax``).

Runs (main 6f517df + the kang_full set of 996f380, 2 shared cores, one thread each)::

    # Leiden on the final latents of the VAE and the c*GMΔVAE, and the mixture's argmax
    python clusters_pretrain_dev_2026-12-07.py latents digits 0      # diag_digits / diag_kang
    # one model at given epochs (VAE 200, c*GMΔVAE 800); WARMFRAC sets the KL warm-up share
    WARMFRAC=0.5 python clusters_pretrain_dev_2026-12-07.py one digits 0 vae 400   # diag2/3
    # traces: benchmarks/trace_mixture.py under the same WARMFRAC patch
    WARMFRAC=0.125 python clusters_pretrain_dev_2026-12-07.py trace digits 0 15 '{"epochs": 800}'
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import warnings
from pathlib import Path

import geovae  # before torch (OpenMP settings)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def patch_warmup() -> None:
    """KL warm-up over ``WARMFRAC`` of the run's steps instead of the trainer's 0.25."""
    from geovae.training import parts

    share = os.environ.get("WARMFRAC")
    if share:
        parts.KLWarmup.for_run = classmethod(lambda cls, total, f: cls(int(float(share) * total)))


def fitted(data: str, seed: int, model: str, epochs: int | None, k: int | None) -> tuple:
    from cluster_sets import load

    if data == "kang_full" and model == "cgmvae":
        k = None  # bench_donors' cgmvae: the model's default K
    a, kw, truth = load(data, seed)
    opts = {"n_clusters": k} if model == "cgmvae" and k else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.fit(a, model=model, model_options=opts, seed=seed, progress=False, device="cpu",
                   heldout_samples=0, batch_key="condition", epochs=epochs, **kw)
    return a, a.obs[truth].to_numpy()


def main() -> None:
    import numpy as np
    from cluster_sets import leiden
    from sklearn.metrics import adjusted_rand_score as ari

    from geovae.modules.mixture_start import leiden_labels

    patch_warmup()
    what, data, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if what == "trace":
        sys.argv = [str(HERE.parent / "trace_mixture.py"), data, *sys.argv[3:]]
        runpy.run_path(sys.argv[0], run_name="__main__")
        return
    out: dict = {"data": data, "seed": seed}
    models = ("vae", "cgmvae") if what == "latents" else (sys.argv[4],)
    for model in models:
        epochs = int(sys.argv[5]) if what == "one" else None
        a, y = fitted(data, seed, model, epochs, 15)
        lat = np.asarray(a.obsm["X_geovae"])
        out[f"{model}_bench_leiden"] = ari(y, leiden(a, "X_geovae", seed))
        lab = leiden_labels(lat, 100, seed)  # the start's rule, unfolded
        out[f"{model}_start_leiden_nofold"], out[f"{model}_start_nclust"] = ari(y, lab), int(
            lab.max() + 1)
        if model == "cgmvae":
            out["cgmvae_argmax"] = ari(y, a.obsm["geovae_cluster_probs"].argmax(1))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
