"""Does --n-clusters K act as an upper bound? Components in use with and without the delete
moves (issue 9, item 2).

Run (one thread; each line is one fit)::

    OMP_NUM_THREADS=1 python benchmarks/bench_components.py --data blobs5 blobs10 kang \
        --seeds 0 1 2 3 4 --json components.jsonl
    python benchmarks/bench_components.py --summary components.jsonl

Data: ``blobs5`` / ``blobs10`` = `geovae.datasets.make_blobs` (1000 cells, 5 / 10 blobs, one
condition, data seed = model seed), Gaussian, latent_dim 4, 60 epochs; ``kang`` =
``data/kang_counts.h5ad`` (3000 PBMCs, 10 annotated types, ``stim`` as batch key), NB,
latent_dim 10, 40 epochs. K = 15 everywhere; unsupervised c*GMΔVAE with global weights.

Configurations: ``delete`` (today's default) and ``keep`` (the delete moves switched off by
replacing the module's ``after_training`` hook with a no-op: the model before this change).
Recorded: components in use by weight (>= 0.5%, ``n_components_used``) and by argmax
(``n_components_argmax``), the weight left on components outside the ``n_types`` largest,
ARI of the argmax against the truth, and the fit's wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, add_record_options, emit, runs_wanted  # noqa: E402

METRICS = ("n_used", "n_argmax", "spare_weight", "ari", "seconds")


def load(name: str, seed: int) -> tuple[Any, dict[str, Any], str, int]:
    """(adata, fit kwargs, truth column, number of true types)."""
    import anndata as ad

    from geovae.datasets import make_blobs

    if name.startswith("blobs"):
        n = int(name[5:])
        a = make_blobs(n_cells=1000, n_blobs=n, n_conditions=1, seed=seed)
        return a, {"likelihood": "gaussian", "latent_dim": 4, "epochs": 60}, "blob", n
    if name == "kang":
        a = ad.read_h5ad(ROOT / "data" / "kang_counts.h5ad")
        return a, {"likelihood": "nb", "latent_dim": 10, "epochs": 40,
                   "batch_key": "stim"}, "seurat_annotations", 10
    raise ValueError(name)


def run(data: str, config: str, seed: int) -> dict[str, Any]:
    from sklearn.metrics import adjusted_rand_score

    import geovae
    from geovae.modules.cgmvae import CGMVAEModule

    adata, kw, truth, n_types = load(data, seed)
    hook = CGMVAEModule.after_training
    if config == "keep":
        CGMVAEModule.after_training = lambda *a, **k: None
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            geovae.fit(adata, model="cgmvae", model_options={"n_clusters": 15}, seed=seed,
                       progress=False, device="cpu", heldout_samples=0, **kw)
        seconds = time.perf_counter() - t0
    finally:
        CGMVAEModule.after_training = hook
    info = adata.uns["geovae"]
    weights = np.sort(np.asarray(info["mixture_weights"]))[::-1]
    probs = adata.obsm["geovae_cluster_probs"]
    return {"data": data, "config": config, "seed": seed, "n_types": n_types,
            "n_used": int(info["n_components_used"]),
            "n_argmax": int(info["n_components_argmax"]),
            "spare_weight": float(weights[n_types:].sum()),
            "ari": float(adjusted_rand_score(adata.obs[truth], probs.argmax(1))),
            "seconds": round(seconds, 1),
            "weights": [round(float(w), 4) for w in weights]}


def summarise(path: Path) -> None:
    from paired_stats import paired, sd, table

    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for data in dict.fromkeys(r["data"] for r in recs):
        rs = [r for r in recs if r["data"] == data]
        seeds = sorted({r["seed"] for r in rs})
        print(f"\n#### {data} ({rs[0]['n_types']} types, K = 15; seeds {seeds})\n")
        print("| config | n | " + " | ".join(METRICS) + " |")
        print("|---|---|" + "---|" * len(METRICS))
        for c in ("keep", "delete"):
            sel = [r for r in rs if r["config"] == c]
            if sel:
                cells = [f"{np.mean([r[m] for r in sel]):.3g} ± "
                         f"{sd(np.asarray([r[m] for r in sel], float)):.2g}" for m in METRICS]
                print(f"| {c} | {len(sel)} | " + " | ".join(cells) + " |")
        for m in METRICS:
            a = {r["seed"]: r[m] for r in rs if r["config"] == "delete"}
            b = {r["seed"]: r[m] for r in rs if r["config"] == "keep"}
            common = sorted(set(a) & set(b))
            if len(common) >= 2:
                rows.append((f"{data}: {m}", "delete", "keep",
                             paired([a[s] for s in common], [b[s] for s in common])))
    print()
    print("\n".join(table(rows)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=["blobs5", "blobs10", "kang"])
    ap.add_argument("--configs", nargs="+", default=["keep", "delete"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    add_record_options(ap)
    args = ap.parse_args()
    if not runs_wanted(args, summarise):
        return
    for data in args.data:
        for seed in args.seeds:
            for config in args.configs:
                emit(run(data, config, seed), args.json)


if __name__ == "__main__":
    main()
