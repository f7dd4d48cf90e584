"""Which latent geometry fits the data: every geometry trained over seeds like `geovae.fit`,
scored by its held-out log-likelihood (`geovae.tools.evaluate.heldout_loglik`) and compared
with the best by a paired t-test::

    import geovae
    from geovae.tools.compare import format_comparison

    adata = geovae.read("data/pbmc68k_counts.h5ad")
    table = geovae.compare_latents(adata, seeds=(0, 1, 2, 3, 4), latent_dim=5)
    print(format_comparison(table))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from geovae.tools import evaluate
from geovae.tools.evaluate import HELDOUT_SAMPLES, MAX_CELLS

#: significance level of the paired comparison in `compare_latents`
ALPHA = 0.05


def compare_latents(adata: ad.AnnData,
                    latents: Sequence[str] = ("euclidean", "sphere", "hyperbolic"),
                    seeds: Sequence[int] = (0, 1, 2), *, n_samples: int = HELDOUT_SAMPLES,
                    max_cells: int = MAX_CELLS, **fit_kwargs: Any) -> pd.DataFrame:
    """Fit every latent geometry with every seed and compare held-out log-likelihoods.

    Each (latent, seed) is trained like `geovae.fit` (``fit_kwargs``: every option of `fit`
    but ``latent`` and ``seed``; ``volume`` is ignored, ``heldout_samples`` / ``check_cells``
    mean ``n_samples`` / ``max_cells``; ``adata`` is not modified) and scored with
    `heldout_loglik`. A seed fixes the initialisation and the held-out split, so the values of
    two geometries at one seed are paired (same cells). The geometry with the highest mean
    is the reference; every other one is compared with it by a two-sided paired t-test over
    seeds (scipy ``ttest_rel``; needs >= 2 seeds, use >= 5 for power), and called worse only
    when p < 0.05.

    Returns one row per latent, best first: ``latent``, ``loglik_per_cell`` (mean over seeds,
    nats), ``sd`` (over seeds, ddof 1), ``loglik_per_feature``, ``diff_vs_best`` (mean paired
    difference), ``p_value``, ``worse_than_best`` (bool), ``n_seeds``, ``n_cells``,
    ``n_samples``, ``seconds`` (total over seeds), ``per_seed`` (the values, seed order).
    """
    from scipy import stats

    from geovae._threads import using
    from geovae.tools.fit import train_model  # at call time: tests replace it

    if "latent" in fit_kwargs or "seed" in fit_kwargs:
        raise TypeError("compare_latents sets latent and seed itself: use latents= and seeds=")
    fit_kwargs.pop("volume", None)
    n_samples = fit_kwargs.pop("heldout_samples", n_samples)  # `fit`'s names, accepted too
    max_cells = fit_kwargs.pop("check_cells", max_cells)
    fit_kwargs.setdefault("progress", False)
    threads = fit_kwargs.pop("threads", 0)  # as `fit`'s: torch's threads while training
    values: dict[str, list[float]] = {}
    facts: dict[str, dict[str, Any]] = {}
    for latent in latents:
        for seed in seeds:
            t0 = time.perf_counter()
            with using(threads):
                model = train_model(adata, latent=latent, seed=seed, **fit_kwargs)
            record = evaluate.heldout_loglik(model, n_samples, max_cells)
            values.setdefault(latent, []).append(record["per_cell"])
            f = facts.setdefault(latent, {"seconds": 0.0, "n_cells": record["n_cells"],
                                          "n_features": model.spec.n_features})
            f["seconds"] += time.perf_counter() - t0
    means = {k: float(np.mean(v)) for k, v in values.items()}
    best = max(means, key=means.get)
    rows = []
    for latent, v in values.items():
        a, b = np.asarray(v), np.asarray(values[best])
        p = float("nan")
        if latent != best and len(a) >= 2 and np.ptp(a - b) > 0:
            p = float(stats.ttest_rel(a, b).pvalue)
        rows.append({"latent": latent, "loglik_per_cell": means[latent],
                     "sd": float(a.std(ddof=1)) if len(a) > 1 else float("nan"),
                     "loglik_per_feature": means[latent] / facts[latent]["n_features"],
                     "diff_vs_best": float((a - b).mean()), "p_value": p,
                     "worse_than_best": bool(p < ALPHA and (a - b).mean() < 0),
                     "n_seeds": len(a), "n_cells": facts[latent]["n_cells"],
                     "n_samples": int(n_samples), "seconds": round(facts[latent]["seconds"], 1),
                     "per_seed": [float(x) for x in a]})
    table = pd.DataFrame(rows).sort_values("loglik_per_cell", ascending=False)
    table.attrs.update(test="two-sided paired t-test over seeds vs the best (scipy ttest_rel)",
                       alpha=ALPHA, seeds=list(seeds), best=best)
    return table.reset_index(drop=True)


def format_comparison(table: pd.DataFrame) -> str:
    """`compare_latents`' table as plain text (what the recipe in docs/models.md prints)."""
    lines = [f"{'latent':<12} {'log p(x)/cell':>16} {'per feature':>12} {'diff vs best':>13} "
             f"{'p':>8}  call"]
    for r in table.itertuples():
        call = "best" if r.latent == table.attrs.get("best") else (
            "worse (p < 0.05)" if r.worse_than_best else "not different")
        p = "" if np.isnan(r.p_value) else f"{r.p_value:.3g}"
        lines.append(f"{r.latent:<12} {r.loglik_per_cell:9.2f} ± {r.sd:<5.2f} "
                     f"{r.loglik_per_feature:12.4f} {r.diff_vs_best:13.2f} {p:>8}  {call}")
    first = table.iloc[0] if len(table) else None
    if first is not None:
        lines.append(f"held-out log p(x) in nats, mean ± sd over {first.n_seeds} seeds "
                     f"{table.attrs.get('seeds')}; {first.n_cells} held-out cells, "
                     f"{first.n_samples} importance samples per cell; "
                     f"{table.attrs.get('test')}, alpha {table.attrs.get('alpha')}")
    return "\n".join(lines)
