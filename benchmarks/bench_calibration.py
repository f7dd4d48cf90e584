"""Calibration of the c*GMΔVAE's label probabilities and the classifier-weight scaling.

Run (one thread; on a long run, from a separate checkout of the commit measured, e.g. a git
worktree, so edits to this tree meanwhile do not leak in)::

    OMP_NUM_THREADS=1 python benchmarks/bench_calibration.py \
        --seeds 100 101 102 103 104 --epochs 50 --json calib.jsonl
    python benchmarks/bench_calibration.py --summary calib.jsonl

Data (``--data``): ``pbmc``, ``data/pbmc68k_counts.h5ad`` (700 cells, 10 ``bulk_labels``, NB
likelihood, auto), or ``digits``, ``data/digits.csv.gz`` (1797 images, 10 digits, Gaussian).
Per seed, 80 % of the labels (``--hide``) are hidden (NaN) with a FRESH seed (the tests use
0-3; seeds 100-104 are the development split of the label temperature's settings,
`geovae.models.calibration`: report on others); semi-supervised ``model="cgmvae"`` with
``label_key``, latent_dim 10, no batch key. ``--epochs 0``: geovae's default (early stopping).

Two classifier weights, same seed, same hidden cells:

* ``scaled`` (today's default): ``classifier_weight`` 50, which the module divides by the
  labelled share (Kingma et al. 2014): effective 50 / 0.2 = 250 per labelled cell;
* ``unscaled``: ``classifier_weight`` = 50 x labelled share, i.e. an effective 50, geovae
  0.1.0's behaviour.

Reported: the ECE (15 equal-width bins) and accuracy of the predicted labels from
``uns['geovae']['calibration']`` (labelled test cells: few; with the label temperature T and
the cells it was fitted on), and on the hidden cells (the 80 % whose labels the model never
saw) the ECE, mean confidence and accuracy of the predictive (``cluster_samples`` 32) without
T (``predictive``, what geovae wrote before T), with T (``tempered``, what it writes) and of
q(y|z) at the posterior mean (0, without T); the hidden cells' NLL of the first two.
``--dump DIR`` saves each fit's probabilities without T (npz) for choosing settings offline.
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
#: file, label column, likelihood
DATA = {"pbmc": ("pbmc68k_counts.h5ad", "bulk_labels", "auto"),
        "digits": ("digits.csv.gz", "label", "gaussian")}


def run(seed: int, weight: str, epochs: int, data: str = "pbmc",
        dump: Path | None = None, hide: float = HIDE) -> dict[str, Any]:
    """One semi-supervised fit; ECE and accuracy on validation and hidden cells."""
    import anndata as ad

    import geovae
    from geovae.models.cgmvae import expected_calibration_error

    file, key, likelihood = DATA[data]
    read = ad.read_h5ad if file.endswith(".h5ad") else geovae.read
    adata = read(ROOT / "data" / file)
    truth = adata.obs[key].astype(str).to_numpy()
    hidden = np.random.default_rng(seed).random(adata.n_obs) < hide
    col = truth.astype(object).copy()
    col[hidden] = np.nan
    adata.obs[key] = col
    share = float((~hidden).mean())
    opts = {} if weight == "scaled" else {"classifier_weight": 50.0 * share}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", label_key=key, model_options=opts,
                           likelihood=likelihood,
                           epochs=epochs or None, progress=False, seed=seed, device="cpu",
                           heldout_samples=0)
    rec: dict[str, Any] = {"data": data, "seed": seed, "weight": weight, "epochs": epochs,
                           "hide": hide,
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
    raw = model.cluster_probs_of(source, tempered=False)
    for name, probs in (("predictive", raw), ("tempered", model.cluster_probs_of(source)),
                        ("posterior_mean", model.cluster_probs_of(source, 0, tempered=False))):
        p = probs[hidden][:, :len(cats)]
        p = p / p.sum(1, keepdims=True).clip(1e-12)
        rec[f"hidden_ece_{name}"] = expected_calibration_error(p, t)
        rec[f"hidden_accuracy_{name}"] = float((p.argmax(1) == t).mean())
        rec[f"hidden_confidence_{name}"] = float(p.max(1).mean())
        if name != "posterior_mean":  # cells of a type without a component left out
            rec[f"hidden_nll_{name}"] = float(-np.log(p[t >= 0, t[t >= 0]].clip(1e-12)).mean())
    if dump is not None:  # raw probabilities, for choosing settings offline
        h = model.history
        codes = np.array([cats.index(x) if x in cats else -1 for x in truth])
        np.savez_compressed(dump / f"{data}_{weight}_{hide:g}_{seed}.npz", truth=codes,
                            hidden=hidden, labelled=np.asarray(source.labels.cpu().numpy()) >= 0,
                            predictive=raw,
                            posterior_mean=model.cluster_probs_of(source, 0, tempered=False),
                            validation=h.validation_indices.cpu().numpy(),
                            test=h.test_indices.cpu().numpy())
    pred = adata.obs["geovae_label"].astype(str).to_numpy()
    rec["hidden_accuracy_obs_label"] = float((pred[hidden] == truth[hidden]).mean())
    return rec


def summarise(path: Path) -> None:
    """Markdown tables and paired tests by seed, per data set and classifier weight."""
    from paired_stats import paired, sd, table

    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for r in recs:
        r.setdefault("data", "pbmc")  # records before --data and --hide
        r["data"] += f" {r.get('hide', HIDE):.0%} hidden"
    cols = ("val_temperature", "val_temperature_cells", "hidden_ece_predictive",
            "hidden_ece_tempered", "hidden_nll_predictive", "hidden_nll_tempered",
            "hidden_confidence_predictive", "hidden_confidence_tempered",
            "hidden_accuracy_predictive", "hidden_accuracy_tempered",
            "hidden_ece_posterior_mean", "val_n_cells", "val_ece_untempered", "val_ece",
            "epochs_run")
    print("| data | weight | n | " + " | ".join(cols) + " |")
    print("|---|---|---|" + "---|" * len(cols))
    groups = list(dict.fromkeys((r["data"], r["weight"]) for r in recs))
    for d, w in groups:
        rs = [r for r in recs if (r["data"], r["weight"]) == (d, w)]
        cells = [f"{np.nanmean([r.get(c, np.nan) for r in rs]):.3f} ± "
                 f"{sd([r.get(c, np.nan) for r in rs]):.3f}" for c in cols]
        print(f"| {d} | {w} | {len(rs)} | " + " | ".join(cells) + " |")
    by = {(r["data"], r["weight"], r["seed"]): r for r in recs}
    rows = []
    for d, w in groups:
        seeds = sorted(s for (dd, ww, s) in by if (dd, ww) == (d, w))
        for a, b, name_a, name_b in (
                ("hidden_ece_tempered", "hidden_ece_predictive", "with T", "without T"),
                ("hidden_nll_tempered", "hidden_nll_predictive", "with T", "without T"),
                ("hidden_accuracy_tempered", "hidden_accuracy_predictive", "with T",
                 "without T"),
                ("val_ece", "val_ece_untempered", "with T", "without T"),
                ("hidden_ece_predictive", "hidden_ece_posterior_mean", "predictive",
                 "posterior mean")):
            rows.append((f"{d} {w}: {a} vs {b}", name_a, name_b,
                         paired([by[d, w, s].get(a, np.nan) for s in seeds],
                                [by[d, w, s].get(b, np.nan) for s in seeds])))
        if w == "scaled":
            both = [s for s in seeds if (d, "unscaled", s) in by]
            for m in ("hidden_accuracy_predictive", "hidden_ece_predictive") if both else ():
                rows.append((f"{d}: {m}", "scaled", "unscaled",
                             paired([by[d, "scaled", s][m] for s in both],
                                    [by[d, "unscaled", s][m] for s in both])))
    print()
    print("\n".join(table(rows)))
    for d, w in groups:
        print(f"\n{d} {w}, per seed (T on cells; hidden ECE without -> with T; accuracy):")
        for r in sorted((r for r in recs if (r["data"], r["weight"]) == (d, w)),
                        key=lambda r: r["seed"]):
            print(f"- s{r['seed']}: T {r.get('val_temperature', np.nan):.2f} on "
                  f"{r.get('val_temperature_cells', 0):.0f}; ECE "
                  f"{r['hidden_ece_predictive']:.3f} -> {r.get('hidden_ece_tempered', np.nan):.3f}"
                  f"; accuracy {r['hidden_accuracy_predictive']:.3f}; "
                  f"{r.get('epochs_run')} epochs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[100, 101, 102, 103, 104])
    ap.add_argument("--weights", nargs="+", default=["scaled", "unscaled"])
    ap.add_argument("--epochs", type=int, default=50, help="0: geovae's default")
    ap.add_argument("--data", choices=sorted(DATA), default="pbmc")
    ap.add_argument("--hide", type=float, default=HIDE, help="share of the labels hidden")
    ap.add_argument("--dump", type=Path, help="folder for each fit's raw probabilities (npz)")
    add_record_options(ap)
    args = ap.parse_args()
    if not runs_wanted(args, summarise):
        return
    for seed in args.seeds:
        if seed in range(4):
            raise SystemExit("seeds 0-3 hide labels in the tests: use fresh seeds")
        for w in args.weights:
            emit(run(seed, w, args.epochs, args.data, args.dump, args.hide), args.json)


if __name__ == "__main__":
    main()
