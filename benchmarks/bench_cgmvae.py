"""Clustering and label-transfer quality of the c*GMΔVAE (``model="cgmvae"``) on the bundled data.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_cgmvae.py [--seeds 0 1 2 3 4]
        [--transfer-seeds 100 101 102 103 104] [--epochs N] [--skip-scanvi]
        [--scanvi-python .venv-scvi/bin/python] [--write]

Data: ``pbmc68k_counts.h5ad`` (700 cells, 10 ``bulk_labels``; counts, likelihood "auto") and
``digits.csv.gz`` (1797 images, 10 digits; likelihood "gaussian").

Unsupervised (truth never shown), per seed, scored with ARI, NMI, Hungarian-matched accuracy
(``linear_sum_assignment`` on the truth x prediction contingency table; clusters left
unmatched count as errors) and cluster purity:

1. cgmvae, K = number of labels, prediction = argmax of ``obsm["geovae_cluster_probs"]``;
2. Euclidean VAE (``model="vae"``) + ``geovae.cluster`` (Leiden, resolution 1);
3. PCA + Leiden (``baseline_pca_leiden.pca_leiden``).

Label transfer, per transfer seed: 25 % and 80 % of the labels hidden (``rng(seed).random(n) <
f``); the transfer seeds (default 100-104) are not those of the tests (tests/modules/
test_cgmvae.py hides labels with seeds 0 and 1, on which the classifier weight was chosen), so
the benchmark measures splits nothing was tuned on. Accuracy on the hidden cells of cgmvae
(``label_key``,
semi-supervised: hidden labels are NaN), scvi-tools' scANVI on the same cells and split (SCVI
pre-training then ``SCANVI.from_scvi_model``, default epochs, CPU, in a separate venv given by
``--scanvi-python``), and logistic regression / 15-NN on 30 PCs as simple baselines.

Prints markdown tables (mean ± sd with ddof = 1) and paired comparisons across seeds (every
method against every other on each metric: mean difference, paired t-test and Wilcoxon
signed-rank, see paired_stats.py; a "beats" claim needs >= 5 seeds and paired t p < 0.05);
``--write`` replaces the "Clustering quality (c*GMΔVAE)" section of benchmarks/RESULTS.md;
``--json`` keeps the per-seed records.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.neighbors import KNeighborsClassifier

import geovae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SCVI_PYTHON, replace_section  # noqa: E402
from baseline_pca_leiden import load_counts, load_digits_csv, pca_leiden  # noqa: E402
from paired_stats import mean_sd, paired  # noqa: E402
from paired_stats import table as paired_table  # noqa: E402

SECTION = "## Clustering quality (c*GMΔVAE)"
UNKNOWN = "Unknown"
HIDE = (0.25, 0.80)

# Run by --scanvi-python in its own venv: argv = in.h5ad out.csv seed likelihood drop_last.
# drop_last=1 is only used on a retry: with some splits the last minibatch holds 1 cell and
# scvi's BatchNorm raises "Expected more than 1 value per channel when training".
SCANVI_SCRIPT = r"""
import sys, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
import anndata as ad, scvi
src, out, seed, lik = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
split = {"drop_last": True} if sys.argv[5] == "1" else None
scvi.settings.seed = seed
scvi.settings.num_threads = 1
scvi.settings.dl_num_workers = 0
a = ad.read_h5ad(src)
t0 = time.perf_counter()
scvi.model.SCVI.setup_anndata(a, labels_key="hidden_label")
vae = scvi.model.SCVI(a, n_latent=10, gene_likelihood=lik)
vae.train(accelerator="cpu", enable_progress_bar=False, datasplitter_kwargs=split)
lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="Unknown")
lvae.train(accelerator="cpu", enable_progress_bar=False, datasplitter_kwargs=split)
pred = lvae.predict()
import pandas as pd
pd.DataFrame({"pred": pred}, index=a.obs_names).to_csv(out)
print("SCANVI_OK", scvi.__version__, vae.history["elbo_train"].shape[0],
      lvae.history["elbo_train"].shape[0], round(time.perf_counter() - t0, 1))
"""


# ---------------------------------------------------------------------- metrics
def contingency(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Counts of (true label, predicted cluster) pairs: rows truth, columns clusters."""
    return pd.crosstab(pd.Series(truth, dtype=str), pd.Series(pred, dtype=str)).to_numpy()


def hungarian_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy after the one-to-one label <-> cluster matching that maximises agreement."""
    table = contingency(truth, pred)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def purity(truth: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of cells in their cluster's majority label (rises with the cluster count)."""
    table = contingency(truth, pred)
    return float(table.max(0).sum() / table.sum())


def scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    truth, pred = np.asarray(truth).astype(str), np.asarray(pred).astype(str)
    return {
        "ARI": float(adjusted_rand_score(truth, pred)),
        "NMI": float(normalized_mutual_info_score(truth, pred)),
        "acc": hungarian_accuracy(truth, pred),
        "purity": purity(truth, pred),
        "k": int(len(np.unique(pred))),
    }


# ---------------------------------------------------------------------- data
DATASETS = {
    "pbmc": {"file": "pbmc68k_counts.h5ad", "label_key": "bulk_labels", "likelihood": "auto",
             "scanvi_likelihood": "zinb"},
    "digits": {"file": "digits.csv.gz", "label_key": "label", "likelihood": "gaussian",
               "scanvi_likelihood": "zinb"},
}


def load(name: str, data_dir: Path) -> tuple[ad.AnnData, np.ndarray]:
    """Raw data as geovae reads it, and the true labels as strings."""
    spec = DATASETS[name]
    adata = geovae.read(data_dir / spec["file"])
    return adata, adata.obs[spec["label_key"]].astype(str).to_numpy()


def baseline_view(name: str, data_dir: Path) -> ad.AnnData:
    """The PCA baseline's input (log-normalised counts / standardised pixels)."""
    if name == "pbmc":
        return load_counts(data_dir / DATASETS[name]["file"])[0]
    return load_digits_csv(data_dir / DATASETS[name]["file"])[0]


def hidden_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n) < fraction


# ---------------------------------------------------------------------- methods
def _fit(adata: ad.AnnData, name: str, epochs: int | None, seed: int, **kw: object) -> float:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.fit(adata, latent_dim=10, likelihood=DATASETS[name]["likelihood"], epochs=epochs,
                   seed=seed, progress=False, **kw)
    torch.set_num_threads(1)
    return time.perf_counter() - t0


def unsupervised(name: str, data_dir: Path, seed: int, epochs: int | None) -> list[dict]:
    out = []
    adata, truth = load(name, data_dir)
    k = len(np.unique(truth))
    sec = _fit(adata, name, epochs, seed, model="cgmvae", model_options={"n_clusters": k})
    pred = np.asarray(adata.obsm["geovae_cluster_probs"]).argmax(1)
    out.append({"method": f"cgmvae (K={k}, argmax)", "sec": sec, **scores(truth, pred)})

    adata, truth = load(name, data_dir)
    sec = _fit(adata, name, epochs, seed, model="vae")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.cluster(adata, umap=False, seed=seed)
    torch.set_num_threads(1)
    out.append({"method": "Euclidean VAE + Leiden", "sec": sec,
                **scores(truth, adata.obs["geovae_cluster"].to_numpy())})

    base = baseline_view(name, data_dir)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = pca_leiden(base, seed)
    torch.set_num_threads(1)
    out.append({"method": "PCA + Leiden", "sec": time.perf_counter() - t0,
                **scores(truth, pred)})
    return out


def pca_classifiers(name: str, data_dir: Path, truth: np.ndarray, hidden: np.ndarray,
                    seed: int) -> list[dict]:
    base = baseline_view(name, data_dir)
    sc.pp.pca(base, n_comps=30, random_state=seed)
    torch.set_num_threads(1)
    pcs = base.obsm["X_pca"]
    out = []
    for label, clf in [("logistic regression on 30 PCs",
                        LogisticRegression(max_iter=2000)),
                       ("15-NN on 30 PCs", KNeighborsClassifier(n_neighbors=15))]:
        clf.fit(pcs[~hidden], truth[~hidden])
        acc = float((clf.predict(pcs[hidden]) == truth[hidden]).mean())
        out.append({"method": label, "acc": acc})
    return out


def scanvi(name: str, data_dir: Path, hidden: np.ndarray, seed: int, python: str,
           workdir: Path) -> dict:
    adata, truth = load(name, data_dir)
    col = np.where(hidden, UNKNOWN, truth)
    small = ad.AnnData(X=adata.X.astype(np.float32),
                       obs=pd.DataFrame({"hidden_label": pd.Categorical(col)},
                                        index=adata.obs_names),
                       var=pd.DataFrame(index=adata.var_names))
    src, dst = workdir / f"{name}_{seed}.h5ad", workdir / f"{name}_{seed}.csv"
    small.write_h5ad(src)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    for drop_last in ("0", "1"):
        run = subprocess.run([python, "-c", SCANVI_SCRIPT, str(src), str(dst), str(seed),
                              DATASETS[name]["scanvi_likelihood"], drop_last],
                             capture_output=True, text=True, env=env, cwd=workdir)
        line = [x for x in run.stdout.splitlines() if x.startswith("SCANVI_OK")]
        if run.returncode == 0 and line:
            break
        tail = (run.stderr or run.stdout).strip().splitlines()[-1:]
        print(f"scANVI failed ({name}, seed {seed}, drop_last={drop_last}): {tail}",
              file=sys.stderr)
    sec = time.perf_counter() - t0
    if run.returncode != 0 or not line:
        return {"method": "scANVI", "acc": float("nan"), "sec": sec, "error": " | ".join(tail)}
    pred = pd.read_csv(dst, index_col=0)["pred"].astype(str).to_numpy()
    _, version, e1, e2, _ = line[0].split()
    retry = " (retried with drop_last=True)" if drop_last == "1" else ""
    return {"method": "scANVI", "acc": float((pred[hidden] == truth[hidden]).mean()),
            "sec": sec, "info": f"scvi-tools {version}, SCVI {e1} + SCANVI {e2} epochs{retry}"}


def fill_scanvi(path: Path, python: str, data_dir: Path) -> None:
    """Re-run the scANVI records of an earlier --json run that failed (acc NaN), in place."""
    records = json.loads(path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for r in records:
            if r["method"] == "scANVI" and not np.isfinite(r["acc"]):
                n = load(r["data"], data_dir)[0].n_obs
                hidden = hidden_mask(n, r["hidden"], int(r["seed"]))
                new = scanvi(r["data"], data_dir, hidden, int(r["seed"]), python, Path(tmp))
                r.pop("error", None)
                r.update(new)
                print(f"refilled scANVI {r['data']} s{r['seed']} {r['hidden']}: "
                      f"{r['acc']:.3f}", file=sys.stderr)
    path.write_text(json.dumps(records, indent=1, default=str))


def transfer(name: str, data_dir: Path, seed: int, epochs: int | None, fraction: float,
             scanvi_python: str | None, workdir: Path) -> list[dict]:
    spec = DATASETS[name]
    adata, truth = load(name, data_dir)
    hidden = hidden_mask(adata.n_obs, fraction, seed)
    col = adata.obs[spec["label_key"]].astype(object).to_numpy().copy()
    col[hidden] = np.nan
    adata.obs[spec["label_key"]] = col
    sec = _fit(adata, name, epochs, seed, model="cgmvae", label_key=spec["label_key"])
    pred = adata.obs["geovae_label"].astype(str).to_numpy()
    out = [{"method": "cgmvae (label_key)", "sec": sec,
            "acc": float((pred[hidden] == truth[hidden]).mean())}]
    if scanvi_python:
        out.append(scanvi(name, data_dir, hidden, seed, scanvi_python, workdir))
    out.extend(pca_classifiers(name, data_dir, truth, hidden, seed))
    for r in out:
        r["n_hidden"] = int(hidden.sum())
    return out


# ---------------------------------------------------------------------- tables
def comparisons(records: list[dict]) -> str:
    """Every pair of methods per (data, task), paired across seeds on each metric."""
    df = pd.DataFrame(records)
    rows = []
    uns = df[df["task"] == "unsupervised"]
    for data, g in uns.groupby("data", sort=False):
        methods = list(dict.fromkeys(g["method"]))
        wide = {m: g[g["method"] == m].set_index("seed") for m in methods}
        for metric, label in (("ARI", "ARI"), ("NMI", "NMI"), ("acc", "matched acc.")):
            for i, a in enumerate(methods):
                for b in methods[i + 1:]:
                    seeds = sorted(set(wide[a].index) & set(wide[b].index))
                    rows.append((f"{data}, unsupervised, {label}", a, b,
                                 paired(wide[a].loc[seeds, metric], wide[b].loc[seeds, metric])))
    sup = df[df["task"] == "transfer"]
    for (data, frac), g in sup.groupby(["data", "hidden"], sort=False):
        methods = list(dict.fromkeys(g["method"]))
        wide = {m: g[g["method"] == m].set_index("seed") for m in methods}
        for i, a in enumerate(methods):
            for b in methods[i + 1:]:
                seeds = sorted(set(wide[a].index) & set(wide[b].index))
                rows.append((f"{data}, {int(round(frac * 100))} % hidden, held-out acc.", a, b,
                             paired(wide[a].loc[seeds, "acc"], wide[b].loc[seeds, "acc"])))
    return "\n".join(paired_table(rows))


def tables(records: list[dict]) -> str:
    df = pd.DataFrame(records)
    lines = ["### Unsupervised clustering (mean ± sd over seeds, ddof = 1)", "",
             "| data | method | clusters | ARI | NMI | matched acc. | purity | fit s |",
             "|---|---|---|---|---|---|---|---|"]
    uns = df[df["task"] == "unsupervised"]
    for (data, method), g in uns.groupby(["data", "method"], sort=False):
        ks = "/".join(str(int(k)) for k in g["k"])
        lines.append(f"| {data} | {method} | {ks} | {mean_sd(g['ARI'])} | {mean_sd(g['NMI'])} "
                     f"| {mean_sd(g['acc'])} | {mean_sd(g['purity'])} | {g['sec'].mean():.0f} |")
    lines += ["", "### Label transfer: accuracy on the hidden cells (mean ± sd over seeds, "
              "ddof = 1)", "",
              "| data | labels hidden | method | held-out acc. | hidden cells | s |",
              "|---|---|---|---|---|---|"]
    sup = df[df["task"] == "transfer"]
    for (data, frac, method), g in sup.groupby(["data", "hidden", "method"], sort=False):
        sec = f"{g['sec'].mean():.0f}" if "sec" in g and g["sec"].notna().any() else ""
        lines.append(f"| {data} | {int(round(frac * 100))} % | {method} | {mean_sd(g['acc'])} "
                     f"| {int(g['n_hidden'].mean())} | {sec} |")
    return "\n".join(lines)


def per_seed(records: list[dict]) -> str:
    df = pd.DataFrame(records)
    lines = ["| data | task | method | seed | ARI | matched acc. / held-out acc. |",
             "|---|---|---|---|---|---|"]
    for r in df.itertuples():
        v = getattr(r, "ARI", None)  # absent in a label-transfer-only run
        ari = f"{v:.3f}" if isinstance(v, float) and not np.isnan(v) else ""
        task = r.task if r.task == "unsupervised" else f"{int(round(r.hidden * 100))} % hidden"
        lines.append(f"| {r.data} | {task} | {r.method} | {r.seed} | {ari} | {r.acc:.3f} |")
    return "\n".join(lines)


def write_section(text: str) -> None:
    replace_section(ROOT / "benchmarks" / "RESULTS.md", SECTION, f"{SECTION}\n\n{text.strip()}\n")


def run_all(args: argparse.Namespace) -> list[dict]:
    """Every (seed, data set): the unsupervised and the label-transfer runs, as records."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    scanvi_python = None if args.skip_scanvi else args.scanvi_python
    records: list[dict] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # seed-outer: an interrupted run still has whole seeds; the i-th unsupervised seed
        # runs next to the i-th transfer seed
        for useed, tseed in itertools.zip_longest(args.seeds, args.transfer_seeds):
            for name in args.datasets:
                runs = [] if useed is None else unsupervised(name, args.data, useed, args.epochs)
                for r in runs:
                    records.append({"data": name, "task": "unsupervised", "seed": useed, **r})
                    print(f"[{time.perf_counter() - t_start:6.0f}s] {name} s{useed} "
                          f"{r['method']}: ARI {r['ARI']:.3f} acc {r['acc']:.3f}",
                          file=sys.stderr, flush=True)
                for frac in HIDE if tseed is not None else ():
                    for r in transfer(name, args.data, tseed, args.epochs, frac, scanvi_python,
                                      Path(tmp)):
                        records.append({"data": name, "task": "transfer", "hidden": frac,
                                        "seed": tseed, **r})
                        print(f"[{time.perf_counter() - t_start:6.0f}s] {name} s{tseed} "
                              f"{int(frac * 100)}% hidden {r['method']}: acc {r['acc']:.3f}",
                              file=sys.stderr, flush=True)
                if args.json:  # after every (seed, data set), so a cut-off run keeps its part
                    args.json.write_text(json.dumps(records, indent=1, default=str))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                        help="seeds of the unsupervised runs (none: label transfer only)")
    parser.add_argument("--transfer-seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104],
                        help="seeds of the label-transfer runs (hidden split and fits); not the "
                        "seeds the tests tuned the classifier weight on")
    parser.add_argument("--epochs", type=int, default=None,
                        help="geovae epochs (default: geovae's own, 400 for these sizes)")
    parser.add_argument("--skip-scanvi", action="store_true")
    parser.add_argument("--scanvi-python", default=SCVI_PYTHON,
                        help="python of a virtual environment with scvi-tools "
                             "(benchmarks/_common.py)")
    parser.add_argument("--json", type=Path, default=None, help="write per-seed records here")
    parser.add_argument("--write", action="store_true",
                        help=f"replace the '{SECTION}' section of benchmarks/RESULTS.md")
    parser.add_argument("--notes", type=Path, default=None,
                        help="markdown file appended under the tables when --write")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="tabulate (and with --write, record) an earlier --json run "
                        "instead of running")
    parser.add_argument("--scanvi-fill", type=Path, default=None,
                        help="re-run the failed scANVI records of an earlier --json run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.scanvi_fill:
        fill_scanvi(args.scanvi_fill, args.scanvi_python, args.data)
        return 0
    t_start = time.perf_counter()
    if args.from_json:
        records = json.loads(args.from_json.read_text())
    else:
        records = run_all(args)
    useeds = sorted({int(r["seed"]) for r in records if r["task"] == "unsupervised"})
    tseeds = sorted({int(r["seed"]) for r in records if r["task"] == "transfer"})
    if min(len(useeds) or 5, len(tseeds) or 5) < 5:
        print(f"warning: seeds {useeds} / transfer seeds {tseeds}: a paired test needs >= 5 "
              "to support a claim", file=sys.stderr)
    text = tables(records)
    compared = comparisons(records)
    print(text)
    print()
    print(compared)
    print()
    print(per_seed(records))
    if args.write:
        scanvi_info = sorted({r["info"] for r in records if r.get("info")})
        errors = sorted({r["error"] for r in records if r.get("error")})
        meta = [
            "", "### Paired comparisons across seeds", "",
            "A - B > 0: A scores higher. Paired t-test (two-sided) decides; Wilcoxon "
            "signed-rank (exact, two-sided) beside it cannot go below p = 0.0625 with 5 seeds.",
            "", compared, "",
            f"Unsupervised seeds {useeds}; label-transfer seeds {tseeds}; geovae epochs: "
            f"{args.epochs or 'default (400 at these sizes)'}; latent_dim 10; "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread, CPU; "
            f"python {platform.python_version()}"
            + ("." if args.from_json else f"; total {time.perf_counter() - t_start:.0f} s."),
        ]
        if scanvi_info:
            meta.append("scANVI: " + "; ".join(scanvi_info) + ".")
        if errors:
            meta.append("scANVI errors: " + "; ".join(errors))
        if args.skip_scanvi:
            meta.append("scANVI skipped (--skip-scanvi).")
        notes = args.notes.read_text() if args.notes and args.notes.exists() else ""
        write_section("\n".join([text, *meta, "", "<details><summary>per seed</summary>", "",
                                 per_seed(records), "", "</details>", "", notes]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
