"""Marginal test log-likelihood of VAEs with Euclidean, hyperspherical and hyperbolic latents.

The protocol of Davidson et al. 2018 (Table 1) and Nagano et al. 2019, on scikit-learn's
8x8 digits (binarised once at 8/16, Bernoulli likelihood; a fixed 80/20 train/test split):

    log p(x) ~ logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,  z_k ~ q(z|x)

with K importance samples from the encoder: ``VAEModule.log_marginal`` (log q from the
posterior, the flow's change of variables or the wrapped normal's sample). Models: euclidean
(Gaussian), sphere (vMF), hyperbolic (wrapped normal), euclidean + 2 RealNVP layers;
``--dims`` are intrinsic latent dimensions d (S^d and H^d have d + 1 coordinates).
Encoder/decoder: 2 x 256 MLPs, no dropout. Training is geovae's own loop (AdamW, KL warm-up
over the first 25% of steps, early stopping on a 10% validation split with the best weights
restored). One thread.

Usage::

    python benchmarks/bench_curved_loglik.py [--dims 2 5 10 20] [--seeds 0 1 2 3 4]
        [--models ...] [--epochs 150] [--samples 500] [--out benchmarks/curved_loglik.md]
        [--json results.json] [--from-json results.json]

The summary gives mean ± sd (ddof = 1) over seeds and compares every pair of models per d,
paired across seeds (paired t-test, Wilcoxon signed-rank beside it: paired_stats.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from geovae.data import InMemorySource, Prepared
from geovae.modules.base import Batch
from geovae.modules.vae import VAEModule
from geovae.nn.latents import make_latent
from geovae.training import train_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_stats import ALPHA, paired, sd  # noqa: E402
from paired_stats import table as paired_table  # noqa: E402

MODELS = {
    "euclidean": ("euclidean", {}),
    "sphere (vMF)": ("sphere", {"posterior": "vmf"}),
    "hyperbolic": ("hyperbolic", {}),
    "euclidean + flow(2)": ("euclidean", {"flow": 2}),
}


def load_digits_binary(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Binarised digits (pixel >= 8 of 16), split 80/20 with a fixed permutation."""
    from sklearn.datasets import load_digits

    x = (load_digits().data >= 8).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_test = len(x) // 5
    return x[perm[n_test:]], x[perm[:n_test]]


def log_likelihood(module: VAEModule, x: torch.Tensor, samples: int) -> torch.Tensor:
    """Importance-sampled log p(x) per row of ``x`` (nats): `VAEModule.log_marginal` (encoder
    as proposal, exact log q for every latent, evaluated in memory-bounded blocks)."""
    return module.log_marginal(Batch(x, None, torch.full((len(x),), -1)), samples)


def run_one(geometry: str, options: dict, dim: int, seed: int, epochs: int, samples: int,
            train: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """Train one model; return (mean test log p(x), seconds)."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    latent = make_latent(geometry, dim, 256, **options)
    module = VAEModule(train.shape[1], latent, "bernoulli", 0, n_hidden=256, n_layers=2,
                       dropout=0.0)
    n = len(train)
    data = InMemorySource(Prepared(X=train, batch=np.zeros((n, 0), dtype=np.int64),
                                   labels=np.full(n, -1, dtype=np.int64)), [],
                          torch.device("cpu"))
    train_module(module, data, epochs=epochs, batch_size=64, lr=1e-3, seed=seed,
                 patience=30, progress=False)
    torch.manual_seed(10_000 + seed)
    ll = log_likelihood(module, torch.as_tensor(test), samples)
    return float(ll.mean()), time.perf_counter() - t0


def _load_json(path: Path) -> tuple[dict[tuple[str, int], dict[int, float]], dict]:
    raw = json.loads(path.read_text())
    results: dict[tuple[str, int], dict[int, float]] = {}
    for r in raw["records"]:
        results.setdefault((r["model"], int(r["dim"])), {})[int(r["seed"])] = float(r["ll"])
    return results, raw.get("settings", {})


def summary(results: dict[tuple[str, int], dict[int, float]], settings: dict) -> str:
    """Mean ± sd (ddof = 1) per model and d, and every pair of models compared per d, paired
    across seeds (paired t-test and Wilcoxon signed-rank; see paired_stats.py)."""
    dims = sorted({d for _, d in results})
    models = [m for m in MODELS if any((m, d) in results for d in dims)]
    seeds = sorted({s for v in results.values() for s in v})
    lines = [f"Test log p(x) in nats (higher is better), mean ± sd (ddof = 1) over seeds "
             f"{seeds}; {settings.get('samples')} importance samples; "
             f"{settings.get('epochs')} epochs max; {settings.get('n_train')} train / "
             f"{settings.get('n_test')} test digits, binarised at 8/16. Bold: the highest mean "
             f"of its row, only where the paired t-test puts it above every other model of the "
             f"row (p < {ALPHA}, Holm-adjusted over the row's comparisons).", "",
             "| d | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    pairs = []
    for dim in dims:
        per = {m: np.array([results[(m, dim)].get(s, np.nan) for s in seeds]) for m in models}
        best = max(models, key=lambda m: np.nanmean(per[m]))
        ps = [paired(per[best], per[m])["p_t"] for m in models if m != best]
        holm = [min(1.0, p * (len(ps) - i)) for i, p in enumerate(sorted(ps))]
        supported = bool(holm) and all(h < ALPHA for h in holm)  # NaN: not supported
        cells = []
        for m in models:
            cell = f"{np.nanmean(per[m]):.2f} ± {sd(per[m]):.2f}"
            cells.append(f"**{cell}**" if m == best and supported else cell)
        lines.append(f"| {dim} | " + " | ".join(cells) + " |")
        for i, a in enumerate(models):
            for b in models[i + 1:]:
                pairs.append((f"d = {dim}", a, b, paired(per[a], per[b])))
    lines += ["", f"Paired across seeds {seeds} (A - B > 0: A has the higher log-likelihood):",
              "", *paired_table(pairs, unit="nats")]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10, 20])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None,
                    help="write the per-seed results here (after every run)")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="tabulate an earlier --json run instead of running")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.from_json:
        results, settings = _load_json(args.from_json)
        table = summary(results, settings)
        print(table)
        if args.out:
            args.out.write_text(table + "\n")
        return
    if len(args.seeds) < 5:
        print(f"warning: {len(args.seeds)} seeds; a paired test needs >= 5 to support a "
              "claim", file=sys.stderr)
    train, test = load_digits_binary()
    settings = {"samples": args.samples, "epochs": args.epochs, "n_train": len(train),
                "n_test": len(test)}
    results: dict[tuple[str, int], dict[int, float]] = {}
    records = []
    t_all = time.perf_counter()
    for dim in args.dims:
        for name in args.models:
            geometry, options = MODELS[name]
            for seed in args.seeds:
                ll, secs = run_one(geometry, options, dim, seed, args.epochs, args.samples,
                                   train, test)
                results.setdefault((name, dim), {})[seed] = ll
                records.append({"model": name, "dim": dim, "seed": seed, "ll": ll,
                                "sec": secs})
                print(f"d={dim:<3d} {name:<20s} seed {seed}: {ll:9.3f} nats  ({secs:.0f} s)",
                      flush=True)
                if args.json:
                    args.json.write_text(json.dumps({"settings": settings, "records": records},
                                                    indent=1))
    table = summary(results, settings)
    table += f"\n\nTotal runtime {time.perf_counter() - t_all:.0f} s."
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
