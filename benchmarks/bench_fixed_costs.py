"""What each per-fit extra costs next to training, measured in one process.

`geovae fit` pays, besides the epochs: the held-out log-likelihood (IWAE on the test split),
the posterior predictive check, the kNN graph + Leiden, the UMAP and the plot. This script
trains a VAE for ``--epochs`` epochs on synthetic negative-binomial counts (``--cells`` x
``--genes``, `geovae.datasets.simulate_counts`, batch key ``condition``), then times every
extra at its default and the held-out estimate at the old default (100 samples) and at the
full precision (100 samples x 2,000 cells), and the UMAP as `geovae.tools.cluster` runs it
(`run_umap`: geovae's default epochs, learning rate, negative samples and PCA start; the
earlier default, ``--umap-epochs 100``; umap-learn's defaults, ``--umap-epochs 0``), each as a
share of the 10-epoch training time measured in the same process: on a shared machine only
ratios within one run compare.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_fixed_costs.py --cells 20000 \\
        --genes 2000 --epochs 10 --threads 2 [--json benchmarks/results/fixed_costs.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from _common import load_average  # noqa: E402

import geovae  # noqa: E402  (before torch: the OpenMP wait policy)


def timed(fn: object) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="append the record here")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)

    from geovae import _keys as K
    from geovae.datasets import simulate_counts
    from geovae.models import GeoVAE
    from geovae.report.plot import save_figure, umap_figure
    from geovae.tools import evaluate as E
    from geovae.tools.cluster import cluster

    # numba compiles kNN / UMAP code on its first call (cached on disk for later runs): do
    # that on a small data set first, so the timings below are what a repeat run pays
    small = simulate_counts(n_cells=500, n_genes=50, n_types=3, n_conditions=1, seed=1)
    small.obsm[K.REP] = small.X[:, :5].toarray() if hasattr(small.X, "toarray") \
        else small.X[:, :5]
    warm_s, _ = timed(lambda: cluster(small, use_rep=K.REP, umap=True, seed=0))
    adata = simulate_counts(n_cells=args.cells, n_genes=args.genes, n_types=8,
                            n_conditions=2, seed=0)
    model = GeoVAE(adata, batch_key="condition", latent_dim=10, seed=0)
    cpu0 = time.process_time()
    train_s, hist = timed(lambda: model.train(epochs=args.epochs, progress=False,
                                              patience=10**9))
    train_cpu_s = time.process_time() - cpu0
    epochs = len(hist.train)
    latent_s, _ = timed(lambda: model.write_outputs(adata, model.source()))
    rows: dict[str, dict] = {}

    def extra(name: str, fn: object, **facts: object) -> object:
        cpu0 = time.process_time()
        seconds, out = timed(fn)
        rows[name] = {"seconds": round(seconds, 3), "share_of_fit": round(seconds / train_s, 4),
                      "cpu_s": round(time.process_time() - cpu0, 3), **facts}
        return out

    n_test = len(model.heldout_indices()[0])
    held = extra("heldout_iwae_default", lambda: E.heldout_loglik(model),
                 samples=E.HELDOUT_SAMPLES, cells=n_test)
    rows["heldout_iwae_default"].update(per_cell=held["per_cell"], se=held["se"],
                                        gain_vs_half=held["gain_vs_half"])
    old = extra("heldout_iwae_100_samples", lambda: E.heldout_loglik(model, 100),
                samples=100, cells=n_test)
    rows["heldout_iwae_100_samples"].update(per_cell=old["per_cell"], se=old["se"],
                                            gain_vs_half=old["gain_vs_half"])
    # what 0.2.0 paid: 100 samples x 2,000 (validation) cells
    val = model.history.validation_indices.numpy()[:2000]
    extra("iwae_100_samples_2000_cells", lambda: model.log_marginal_of(model.source(), val, 100),
          samples=100, cells=len(val))
    extra("ppc", lambda: E.posterior_predictive_check(model), cells=min(adata.n_obs, 2000))
    extra("knn_leiden", lambda: cluster(adata, use_rep=K.REP, umap=False, seed=0))
    from geovae.tools.cluster import UMAP_EPOCHS, run_umap, umap_settings

    # the UMAP from the same graph as `cluster` runs it (`run_umap`, its start included):
    # geovae's defaults (by size), the earlier default (--umap-epochs 100: 100 epochs at
    # learning rate 1) and umap-learn's defaults (--umap-epochs 0)
    rep = adata.obsm[K.REP]
    for name, asked in {"umap": None, "umap_100_epochs": UMAP_EPOCHS,
                        "umap_umap_learn_default": 0}.items():
        settings = umap_settings(adata.n_obs, asked, rep.shape[1])
        extra(name, lambda s=settings: run_umap(adata, rep, **s._asdict(), seed=0),
              epochs=settings.n_epochs, negative_sample_rate=settings.negatives,
              learning_rate=settings.learning_rate, init=settings.init)
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "umap.png"
        extra("plot", lambda: save_figure(umap_figure(adata, ["condition"]),
                                          png.with_suffix(".tmp.png"), png))
    record = {"cells": args.cells, "genes": args.genes, "epochs": epochs,
              "threads": args.threads, "train_s": round(train_s, 2),
              "train_cpu_s": round(train_cpu_s, 2),
              "s_per_epoch": round(train_s / epochs, 3), "latent_s": round(latent_s, 2),
              "test_cells": n_test, "first_call_warmup_s": round(warm_s, 2),
              "torch": torch.__version__, "geovae": geovae.__version__,
              "load": load_average(3),
              "extras": rows}
    print(f"{args.cells} cells x {args.genes} genes, {epochs} epochs in {train_s:.1f} s "
          f"({train_s / epochs:.2f} s/epoch, {train_cpu_s:.1f} CPU s, {args.threads} threads); "
          f"test split {n_test}; load {load_average(3)}")
    print(f"{'extra':<30} {'seconds':>8} {'% of fit':>9} {'CPU s':>7} {'% of fit CPU':>13}")
    for name, r in rows.items():
        r["share_of_fit_cpu"] = round(r["cpu_s"] / train_cpu_s, 4)
        print(f"{name:<30} {r['seconds']:8.2f} {100 * r['share_of_fit']:8.1f}% "
              f"{r['cpu_s']:7.2f} {100 * r['share_of_fit_cpu']:12.1f}%")
    print(f"held-out log p(x): {held['per_cell']:.2f} ± {held['se']:.2f} "
          f"({E.HELDOUT_SAMPLES} samples; gain over half {held['gain_vs_half']:+.3f}) vs "
          f"{old['per_cell']:.2f} ± {old['se']:.2f} (100 samples; gain over half "
          f"{old['gain_vs_half']:+.3f})")
    if args.json:
        with args.json.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
