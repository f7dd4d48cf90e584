"""Why does geovae's VAE mix donors within types less than scVI's (issue 24, item 4)? Small
probes of the training choices where the two differ, on `bench_donors.py`'s data and scores.

Run (one thread; one record per variant and seed)::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/probe_donor_mixing.py --data baron_mouse \
        --variants default enc_nobatch warmup_all scvi_like --seeds 0 1 2 --json probe.jsonl
    python benchmarks/probe_donor_mixing.py --summary probe.jsonl

``--summary`` also reads `bench_donors.py` records: their ``vae_leiden`` rows (the same fit,
the same numbers as this script's ``default``) count as ``default``.

Variants of the default geovae VAE (``GeoVAE(batch_key=...)``, ``train()`` at its defaults):

* ``default``: as it is (encoder sees the one-hot batch, KL warm-up over the first 25 % of
  the steps, early stopping with patience 30 on a 10 % validation split).
* ``enc_nobatch``: the encoder's batch columns are zeroed (scVI's default
  ``encode_covariates=False``: only the decoder sees the batch).
* ``warmup_all``: KL warm-up over all the steps (scVI's ``n_epochs_kl_warmup=400`` at its
  400 epochs); early stopping as by default (it starts after the warm-up).
* ``scvi_like``: both, with early stopping off (scVI trains its 400 epochs).

Scores as in `bench_donors.py` (15-NN on the latent: purity, rel_same, ilisi, same_batch) and
ARI / NMI of Leiden (resolution 1) on the latent's 15-NN graph.
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
from _common import add_record_options, emit, load_average  # noqa: E402,I001
from bench_donors import DATASETS, K, draw, scores  # noqa: E402

VARIANTS = ("default", "enc_nobatch", "warmup_all", "scvi_like")
SCORES = ("ari", "nmi", "purity", "rel_same", "ilisi", "same_batch", "epochs")


def fit_variant(a, batch: str, seed: int, variant: str) -> tuple[np.ndarray, int]:
    """The variant's latent (posterior means) and the epochs it ran."""
    import torch

    from geovae import GeoVAE
    from geovae.modules.vae import VAEModule

    originals = {name: getattr(VAEModule, name) for name in ("hidden", "hidden_of")
                 if hasattr(VAEModule, name)}
    if variant in ("enc_nobatch", "scvi_like"):
        for name, method in originals.items():  # the encoder's first layer keeps its width
            def zeroed(self, x, c, _method=method):  # and sees batch columns of zeros
                return _method(self, x, None if c is None else torch.zeros_like(c))
            setattr(VAEModule, name, zeroed)
    settings = {}
    if variant in ("warmup_all", "scvi_like"):
        settings["warmup_fraction"] = 1.0
    if variant == "scvi_like":
        settings["patience"] = 10**6
    try:
        model = GeoVAE(a, batch_key=batch or None, seed=seed)
        model.train(device="cpu", progress=False, **settings)
        return model.get_latent(), int(len(model.history.train))
    finally:
        for name, method in originals.items():
            setattr(VAEModule, name, method)


def run(name: str, seed: int, variants: list[str], json_path: Path | None) -> None:
    """Each variant on one draw; one record each."""
    import scanpy as sc
    import torch

    torch.set_num_threads(1)
    a, batch, label = draw(name, seed)
    types = a.obs[label].to_numpy().astype(str)
    batches = a.obs[batch].to_numpy().astype(str) if batch else None
    for variant in variants:
        t = time.perf_counter()
        latent, epochs = fit_variant(a.copy(), batch, seed, variant)
        fit_s = time.perf_counter() - t
        b = sc.AnnData(np.zeros((a.n_obs, 1), dtype=np.float32))
        b.obsm["z"] = latent
        sc.pp.neighbors(b, use_rep="z", n_neighbors=K, random_state=seed)
        sc.tl.leiden(b, flavor="igraph", n_iterations=2, directed=False, resolution=1.0,
                     random_state=seed)
        rec = scores(latent, b.obs["leiden"].to_numpy().astype(str), types, batches)
        rec.pop("per_type", None)
        emit({"data": name, "seed": seed, "variant": variant, "epochs": epochs,
              "fit_s": round(fit_s, 1), "load": load_average(1), **rec}, json_path)


def summarise(path: Path) -> None:
    """Variant x score (mean ± sd) and paired tests against ``default``."""
    from paired_stats import mean_sd, paired, table

    recs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for r in recs:  # bench_donors.py's vae_leiden records are the default variant
        if r.get("method") == "vae_leiden":
            r["variant"] = "default"
    for name in sorted({r["data"] for r in recs}):
        by = {v: {r["seed"]: r for r in recs if r["data"] == name and r.get("variant") == v}
              for v in VARIANTS}
        print(f"\n**{name}**\n\n| variant | n | " + " | ".join(SCORES) + " |")
        print("|---|---|" + "---|" * len(SCORES))
        for v in VARIANTS:
            if by[v]:
                cells = [mean_sd([r[c] for r in by[v].values()], 0 if c == "epochs" else 3)
                         for c in SCORES]
                print(f"| {v} | {len(by[v])} | " + " | ".join(cells) + " |")
        rows = []
        for v in VARIANTS[1:]:
            common = sorted(set(by[v]) & set(by["default"]))
            for c in SCORES[:-1]:
                if len(common) >= 2:
                    rows.append((f"{name} {c}", v, "default",
                                 paired([by[v][s][c] for s in common],
                                        [by["default"][s][c] for s in common])))
        print()
        print("\n".join(table(rows)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="baron_mouse", choices=DATASETS)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_record_options(ap)
    args = ap.parse_args(argv)
    if args.summary:
        summarise(args.summary)
        return 0
    warnings.filterwarnings("ignore")
    for seed in args.seeds:
        run(args.data, seed, args.variants, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
