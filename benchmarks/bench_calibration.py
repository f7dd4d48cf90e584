"""Calibration of the c*GMΔVAE's label probabilities and the classifier-weight scaling.

Run (one thread; on a long run, from a separate checkout of the commit measured, e.g. a git
worktree, so edits to this tree meanwhile do not leak in)::

    OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py \
        --seeds 100 101 102 103 104 --epochs 50 --json calib.jsonl
    python benchmarks/bench_calibration.py --summary calib.jsonl

Data: ``data/pbmc68k_counts.h5ad`` (700 cells, 10 ``bulk_labels``). Per seed, 80 % of the
labels are hidden (NaN) with a FRESH seed (100-104; the tests use 0-3); semi-supervised
``model="cgmvae"`` with ``label_key``, NB likelihood (auto), latent_dim 10, no batch key.

Two classifier weights, same seed, same hidden cells:

* ``scaled`` (today's default): ``classifier_weight`` 50, which the module divides by the
  labelled share (Kingma et al. 2014): effective 50 / 0.2 = 250 per labelled cell;
* ``unscaled``: ``classifier_weight`` = 50 x labelled share, i.e. an effective 50, geovae
  0.1.0's behaviour.

Reported: the ECE (15 equal-width bins) and accuracy of the predicted labels from
``uns['geovae']['calibration']`` (labelled validation cells: few) for the predictive
(``cluster_samples`` 32) and the posterior mean (0), and the same two on the hidden cells
(the 80 % whose labels the model never saw).
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

HIDE = 0.8


def run(seed: int, weight: str, epochs: int) -> dict[str, Any]:
    """One semi-supervised fit; ECE and accuracy on validation and hidden cells."""
    import anndata as ad

    import geovae
    from geovae.models.cgmvae import expected_calibration_error

    adata = ad.read_h5ad(ROOT / "data" / "pbmc68k_counts.h5ad")
    truth = adata.obs["bulk_labels"].astype(str).to_numpy()
    hidden = np.random.default_rng(seed).random(adata.n_obs) < HIDE
    col = truth.astype(object).copy()
    col[hidden] = np.nan
    adata.obs["bulk_labels"] = col
    share = float((~hidden).mean())
    opts = {} if weight == "scaled" else {"classifier_weight": 50.0 * share}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", label_key="bulk_labels", model_options=opts,
                           epochs=epochs or None, progress=False, seed=seed, device="cpu",
                           heldout_samples=0)
    rec: dict[str, Any] = {"seed": seed, "weight": weight, "epochs": epochs,
                           "labelled_share": share, "n_hidden": int(hidden.sum()),
                           "classifier_weight_option": opts.get("classifier_weight", 50.0),
                           "seconds": round(time.perf_counter() - t0, 1),
                           "epochs_run": len(model.history.train) if model.history else None}
    cal = adata.uns["geovae"].get("calibration", {})
    rec.update({f"val_{k}": (float(v) if isinstance(v, (int, float, np.number)) else v)
                for k, v in cal.items()})
    cats = list(model.spec.label_categories)
    # a type with no labelled cell has no component: its hidden cells count as wrong (-1)
    t = np.array([cats.index(x) if x in cats else -1 for x in truth[hidden]])
    rec["n_label_categories"] = len(cats)
    source = model.source()
    for name, n in (("predictive", None), ("posterior_mean", 0)):
        p = model.cluster_probs_of(source, n)[hidden][:, :len(cats)]
        p = p / p.sum(1, keepdims=True).clip(1e-12)
        rec[f"hidden_ece_{name}"] = expected_calibration_error(p, t)
        rec[f"hidden_accuracy_{name}"] = float((p.argmax(1) == t).mean())
        rec[f"hidden_confidence_{name}"] = float(p.max(1).mean())
    pred = adata.obs["geovae_label"].astype(str).to_numpy()
    rec["hidden_accuracy_obs_label"] = float((pred[hidden] == truth[hidden]).mean())
    return rec


def summarise(path: Path) -> None:
    """Markdown tables and paired tests by seed."""
    from paired_stats import paired, sd, table

    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    cols = ("val_n_cells", "val_ece", "val_ece_posterior_mean", "val_accuracy",
            "hidden_ece_predictive", "hidden_ece_posterior_mean",
            "hidden_confidence_predictive", "hidden_confidence_posterior_mean",
            "hidden_accuracy_predictive", "hidden_accuracy_posterior_mean", "seconds")
    print("| weight | n | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for w in dict.fromkeys(r["weight"] for r in recs):
        rs = [r for r in recs if r["weight"] == w]
        cells = [f"{np.nanmean([r.get(c, np.nan) for r in rs]):.3f} ± "
                 f"{sd([r.get(c, np.nan) for r in rs]):.3f}" for c in cols]
        print(f"| {w} | {len(rs)} | " + " | ".join(cells) + " |")
    by = {(r["weight"], r["seed"]): r for r in recs}
    rows = []
    for w in dict.fromkeys(r["weight"] for r in recs):
        seeds = sorted(s for (ww, s) in by if ww == w)
        for a, b in (("hidden_ece_predictive", "hidden_ece_posterior_mean"),
                     ("val_ece", "val_ece_posterior_mean"),
                     ("hidden_accuracy_predictive", "hidden_accuracy_posterior_mean")):
            rows.append((f"{w}: {a} vs {b}", "predictive", "posterior mean",
                         paired([by[w, s].get(a, np.nan) for s in seeds],
                                [by[w, s].get(b, np.nan) for s in seeds])))
    seeds = sorted(s for (w, s) in by if w == "scaled" and ("unscaled", s) in by)
    for m in ("hidden_accuracy_predictive", "hidden_ece_predictive"):
        rows.append((m, "scaled", "unscaled", paired([by["scaled", s][m] for s in seeds],
                                                      [by["unscaled", s][m] for s in seeds])))
    print()
    print("\n".join(table(rows)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[100, 101, 102, 103, 104])
    ap.add_argument("--weights", nargs="+", default=["scaled", "unscaled"])
    ap.add_argument("--epochs", type=int, default=50, help="0: geovae's default")
    add_record_options(ap)
    args = ap.parse_args()
    if not runs_wanted(args, summarise):
        return
    for seed in args.seeds:
        if seed in range(4):
            raise SystemExit("seeds 0-3 hide labels in the tests: use fresh seeds")
        for w in args.weights:
            emit(run(seed, w, args.epochs), args.json)


if __name__ == "__main__":
    main()
