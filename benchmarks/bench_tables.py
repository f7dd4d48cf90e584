"""Clusters of `geovae fit table.csv` against PCA + Leiden and scikit-learn's Dirichlet-process
mixture on labelled tables (issue 24, item 6).

Usage::

    nice -n 10 python benchmarks/bench_tables.py --seeds 0 1 2 3 4 \
        --json benchmarks/results/tables_<date>.jsonl
    python benchmarks/bench_tables.py --summary benchmarks/results/tables_<date>.jsonl

Data: the bundled digits table (``data/digits.csv.gz``, raw pixels 0-16 as a user has them:
the DEVELOPMENT set, on which the table defaults (latent dimension 20, resolution chosen from
the data) were chosen, and the only table any later setting may be chosen on) and
scikit-learn's wine, breast cancer and iris tables and the Palmer penguins (the 342 rows with
all four measurements of ``palmerpenguins/data/penguins.csv`` inside the palmerpenguins 0.1.6
wheel; label ``species``), standardised with StandardScaler as a user would and written to
CSV (REPORT sets: they choose nothing; wine consulted the rule's stability floor and breast
cancer exposed a rule fix in 2026-12-06's first run, so of these only iris and penguins never
informed a setting).
Each seed draws a 90 % subsample of the rows (the seed also seeds every method).

Methods, each a separate process measured alone (wall and CPU seconds, peak RSS):
``pca_leiden``: scanpy defaults on the standardised table (pca, neighbors, leiden at
resolution 1, igraph); ``pca_leiden_auto``: the same PCA, then `geovae.cluster` on it with
``resolution="auto"``: the same 15-NN graph, Leiden settings and resolution-selection rule
(`geovae.tools.resolution`) as `geovae fit table.csv` applies to its latent, so that a
difference is the representation's, not the resolution's; ``bgm``: scikit-learn's
BayesianGaussianMixture (Dirichlet-process weights, 20 components, full covariances) on the
standardised table, clusters = argmax; ``geovae_before``: ``geovae fit t.csv --latent-dim 10
--resolution 1`` (the defaults before 74cee82); ``geovae``: ``geovae fit t.csv`` (the
defaults: d = 20 and ``--resolution auto`` for a table); ``geovae_gaussian``: the same with
``--likelihood gaussian`` (a development candidate for bounded integer tables, which ``auto``
fits with the negative binomial; on a standardised table it is the default fit). geovae fits
run with ``--no-umap --heldout-samples 0 --threads 1``. Ablation rows re-cluster the same
latents in this process (no time, no RSS): ``geovae_d10_auto`` (the before fit's latent,
resolution chosen) and ``geovae_d20_r1`` (the default fit's latent, resolution 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    ROOT,
    Measured,
    add_record_options,
    cpu_model,
    emit,
    launch,
    load_average,
)
from paired_stats import mean_sd, paired, table  # noqa: E402

#: the development table: the only one a setting of `geovae fit table.csv` may be chosen on
#: (d = 20, the resolution rule, and any likelihood for bounded integer tables); the others
#: only report
DEV = ("digits",)
DATASETS = ("digits", "wine", "breast_cancer", "iris", "penguins")
#: the Palmer penguins table inside the palmerpenguins wheel (MIT; downloaded once with
#: ``pip download --no-deps``, never installed; SHA-256 checked)
PENGUINS_SPEC = "palmerpenguins==0.1.6"
PENGUINS_WHEEL = "palmerpenguins-0.1.6-py3-none-any.whl"
PENGUINS_SHA256 = "5c3be9af84dd703a25f1aaeadeac6ac770cfd38c1620d00089f581c023129ee0"
PENGUINS_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
METHODS = ("pca_leiden", "pca_leiden_auto", "bgm", "geovae_before", "geovae_d10_auto",
           "geovae_d20_r1", "geovae", "geovae_gaussian")
#: what a run runs by default: the default fit and PCA + Leiden at resolution 1 and under the
#: same resolution rule (the ablation rows need --methods geovae_before geovae ...)
DEFAULT_METHODS = ("pca_leiden", "pca_leiden_auto", "geovae")
#: methods run by this script in a child process (the rest re-cluster a fit's latent)
BASELINES = ("pca_leiden", "pca_leiden_auto", "bgm")
FITS = {"geovae_before": ["--latent-dim", "10", "--resolution", "1"], "geovae": [],
        "geovae_gaussian": ["--likelihood", "gaussian"]}
RECLUSTER = {"geovae_d10_auto": ("geovae_before", "auto"), "geovae_d20_r1": ("geovae", 1.0)}
GEOVAE = [sys.executable, "-m", "geovae", "fit"]
FIXED = ["--label-key", "label", "--no-umap", "--heldout-samples", "0", "--threads", "1", "-q"]


def load_penguins() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features, species, feature names) of the complete rows of palmerpenguins' CSV."""
    import hashlib
    import subprocess
    import zipfile

    cache = Path(tempfile.gettempdir()) / "geovae-data-cache"
    wheel = cache / PENGUINS_WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", PENGUINS_SPEC,
                        "-d", str(cache)], check=True, stdout=subprocess.DEVNULL)
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != PENGUINS_SHA256:
        raise ValueError(f"{wheel}: SHA-256 differs from {PENGUINS_SHA256}")
    with zipfile.ZipFile(wheel) as whl, whl.open("palmerpenguins/data/penguins.csv") as fh:
        df = pd.read_csv(fh).dropna(subset=PENGUINS_FEATURES)
    return df[PENGUINS_FEATURES].to_numpy(np.float64), df["species"].to_numpy(), \
        PENGUINS_FEATURES


def write_table(name: str, seed: int, folder: Path) -> Path:
    """The seed's 90 % subsample of a data set as a user's CSV (a ``label`` column)."""
    rng = np.random.default_rng(seed)
    if name == "digits":
        df = pd.read_csv(ROOT / "data" / "digits.csv.gz")
        df = df.iloc[np.sort(rng.choice(len(df), int(0.9 * len(df)), replace=False))]
        df = df.set_index("sample_id")
    else:
        from sklearn import datasets
        from sklearn.preprocessing import StandardScaler

        if name == "penguins":
            data, labels, features = load_penguins()
        else:
            b = getattr(datasets, f"load_{name}")()
            data, labels, features = b.data, b.target_names[b.target], b.feature_names
        idx = np.sort(rng.choice(len(labels), int(0.9 * len(labels)), replace=False))
        X = StandardScaler().fit_transform(data[idx])
        df = pd.DataFrame(X, columns=[str(c).replace(" ", "_") for c in features],
                          index=[f"row{i}" for i in idx])
        df["label"] = [str(t) for t in labels[idx]]
    path = folder / f"{name}_{seed}.csv"
    df.to_csv(path)
    return path


def table_labels(csv: Path) -> np.ndarray:
    """The ``label`` column of a table `write_table` wrote, as strings."""
    return pd.read_csv(csv, index_col=0)["label"].astype(str).to_numpy()


def fit_table(csv: Path, out: Path, seed: int, *options: str) -> None:
    """``geovae fit`` on a written table as `run_one` runs it (`GEOVAE`, `FIXED`, then
    ``options``), its output to ``out``; for scripts that only need the fit (no timing)."""
    import subprocess

    subprocess.run([*GEOVAE, str(csv), "--out", str(out), "--seed", str(seed), *FIXED,
                    *options], check=True, capture_output=True)


def baseline(method: str, csv: Path, seed: int, out: Path) -> None:
    """One baseline on the table, run in a child process: its labels to ``out`` (.npy) and,
    for ``pca_leiden_auto``, the resolution chosen to ``out`` with the suffix .json."""
    from sklearn.preprocessing import StandardScaler

    warnings.filterwarnings("ignore")
    df = pd.read_csv(csv, index_col=0)
    X = StandardScaler().fit_transform(df.drop(columns="label").to_numpy(np.float64))
    if method == "pca_leiden":
        import anndata as ad
        from baseline_pca_leiden import pca_leiden

        pred = pca_leiden(ad.AnnData(X.astype(np.float32)), seed)
    elif method == "pca_leiden_auto":
        pred, info = pca_leiden_auto(X, seed)
        Path(out).with_suffix(".json").write_text(json.dumps(info))
    else:
        from sklearn.mixture import BayesianGaussianMixture

        bgm = BayesianGaussianMixture(n_components=20, covariance_type="full", max_iter=500,
                                      weight_concentration_prior_type="dirichlet_process",
                                      random_state=seed)
        pred = bgm.fit(X).predict(X)
    np.save(out, np.asarray(pred).astype(str))


def pca_leiden_auto(X: np.ndarray, seed: int, n_comps: int = 50) -> tuple[np.ndarray, dict]:
    """scanpy's PCA of the standardised table (as `baseline_pca_leiden.pca_leiden`), then
    `geovae.cluster` on it with the resolution chosen by geovae's rule: the same kNN graph,
    Leiden settings and selection rule as a table's fit gets on its latent. Returns the
    clusters and ``{"resolution": ..., "fallback": ...}``."""
    import anndata as ad
    import scanpy as sc

    import geovae

    adata = ad.AnnData(X.astype(np.float32))
    sc.pp.pca(adata, n_comps=min(n_comps, adata.n_obs - 1, adata.n_vars - 1), random_state=seed)
    geovae.cluster(adata, use_rep="X_pca", resolution="auto", seed=seed, umap=False)
    info = adata.uns["geovae"]["cluster"]
    choice = info.get("resolution_choice") or {}
    return adata.obs["geovae_cluster"].astype(str).to_numpy(), {
        "resolution": float(info["resolution"]), "fallback": str(choice.get("fallback", ""))}


def score(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"ari": float(adjusted_rand_score(truth, pred)),
            "nmi": float(normalized_mutual_info_score(truth, pred)),
            "clusters": int(len(np.unique(pred)))}


def recluster(h5ad: Path, resolution: float | str, seed: int) -> tuple[np.ndarray, float]:
    """The clusters of a fit's latent at another resolution (geovae.cluster, as `geovae
    cluster` makes them); returns them and the resolution used."""
    import anndata as ad

    import geovae

    adata = ad.read_h5ad(h5ad)
    geovae.cluster(adata, resolution=resolution, seed=seed, umap=False)
    return adata.obs["geovae_cluster"].to_numpy(), float(
        adata.uns["geovae"]["cluster"]["resolution"])


def run_one(name: str, seed: int, folder: Path, json_path: Path | None,
            methods: tuple[str, ...] = DEFAULT_METHODS, in_process: bool = False) -> None:
    """The chosen methods on one data set and seed; one record per method (``in_process``:
    the baselines in this process, CPU seconds of the call, no RSS)."""
    csv = write_table(name, seed, folder)
    truth = table_labels(csv)
    base = {"data": name, "seed": seed, "role": "development" if name in DEV else "report",
            "n_rows": len(truth), "cpu": cpu_model(), "load": load_average(3)}
    fits = [m for m in methods if m in FITS]
    fits += [RECLUSTER[m][0] for m in methods if m in RECLUSTER and RECLUSTER[m][0] not in fits]
    outs: dict[str, Path] = {}
    for method in [m for m in methods if m in BASELINES] + fits:
        usage, log = folder / "usage.txt", folder / f"{method}.log"
        if in_process and method in BASELINES:
            t0, c0 = time.perf_counter(), time.process_time()
            baseline(method, csv, seed, folder / f"{method}.npy")
            m = Measured(0, time.perf_counter() - t0, float("nan"), time.process_time() - c0)
            cmd = [sys.executable, __file__, "--child", method, "(in process)"]
        elif method in BASELINES:
            npy = folder / f"{method}.npy"
            cmd = [sys.executable, __file__, "--child", method, str(csv), str(seed), str(npy)]
        else:
            out = folder / f"{name}_{seed}_{method}.h5ad"
            cmd = [*GEOVAE, str(csv), "--out", str(out), "--seed", str(seed), *FIXED,
                   *FITS[method]]
            outs[method] = out
        if not (in_process and method in BASELINES):
            with log.open("w") as fh:
                m = launch(cmd, usage, fh, fh)
        if m.returncode != 0:
            raise RuntimeError(f"{method} failed on {name} seed {seed}: {log.read_text()[-800:]}")
        rec = {**base, "method": method, "load": load_average(3), "fit_s": round(m.wall_s, 2),
               "cpu_s": round(m.cpu_s, 2), "in_process": in_process and method in BASELINES,
               "peak_rss_mb": None if m.peak_rss_mb != m.peak_rss_mb else round(m.peak_rss_mb, 1),
               "command": " ".join(map(str, cmd[1:]))}
        if method in outs:
            import anndata as ad

            a = ad.read_h5ad(outs[method])
            pred = a.obs["geovae_cluster"].to_numpy()
            info = a.uns["geovae"]["cluster"]
            rec["resolution"] = float(info["resolution"])
            rec["likelihood"] = str(a.uns["geovae"].get("likelihood", ""))
            rec["fallback"] = str((info.get("resolution_choice") or {}).get("fallback", ""))
        else:
            pred = np.load(folder / f"{method}.npy")
            side = (folder / f"{method}.npy").with_suffix(".json")
            if side.is_file():
                rec.update(json.loads(side.read_text()))
        if method in methods:
            emit({**rec, **score(truth, pred)}, json_path)
    for method in [m for m in methods if m in RECLUSTER]:
        source, res = RECLUSTER[method]
        pred, used = recluster(outs[source], res, seed)
        emit({**base, "method": method, "fit_s": None, "peak_rss_mb": None,
              "resolution": used, "from": source, **score(truth, pred)}, json_path)


#: the paired comparisons of the summary (A, B): the first is item 6's test
PAIRS = (("geovae", "pca_leiden_auto"), ("geovae", "pca_leiden"),
         ("pca_leiden_auto", "pca_leiden"), ("geovae_gaussian", "geovae"),
         ("geovae_gaussian", "pca_leiden_auto"), ("geovae", "geovae_before"), ("geovae", "bgm"),
         ("geovae_d10_auto", "geovae_before"), ("geovae_d20_r1", "geovae_before"))


def _col(r: pd.DataFrame, key: str, digits: int) -> str:
    if key not in r or not r[key].notna().any():
        return "—"
    return mean_sd(r[key].dropna().astype(float), digits)


def summarise(path: Path) -> None:
    """Markdown tables (method x metrics, mean ± sd) and paired tests from the records."""
    recs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    # a (data, seed, method) run twice (a run stopped and restarted): the later record
    df = pd.DataFrame(recs).drop_duplicates(subset=["data", "seed", "method"], keep="last")
    for name in [d for d in DATASETS if d in set(df["data"])]:
        sub = df[df["data"] == name]
        role = sub["role"].iloc[0]
        print(f"\n**{name}** ({role} set; {sub['n_rows'].iloc[0]} rows, "
              f"{sub['seed'].nunique()} seeds)\n")
        print("| method | n | ARI | NMI | clusters found | resolution | fit s (wall) | CPU s "
              "| peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for method in [m for m in METHODS if m in set(sub["method"])]:
            r = sub[sub["method"] == method].sort_values("seed")
            print(f"| {method} | {len(r)} | {mean_sd(r['ari'])} | {mean_sd(r['nmi'])} | "
                  f"{mean_sd(r['clusters'], 1)} | {_col(r, 'resolution', 2)} | "
                  f"{_col(r, 'fit_s', 1)} | {_col(r, 'cpu_s', 1)} | "
                  f"{_col(r, 'peak_rss_mb', 0)} |")
        per_seed = [f"{m}: " + ", ".join(
            f"{int(x.seed)}: {x.resolution:g}/{int(x.clusters)}/{x.ari:.3f}"
            for x in sub[sub["method"] == m].sort_values("seed").itertuples())
            for m in ("pca_leiden_auto", "geovae", "geovae_gaussian") if m in set(sub["method"])]
        if per_seed:
            print("\nper seed (seed: resolution/clusters/ARI): " + "; ".join(per_seed))
        rows = []
        by = {m: sub[sub["method"] == m].sort_values("seed") for m in set(sub["method"])}
        for a, b in PAIRS:
            if a in by and b in by:  # paired by seed: seeds where both ran
                both = by[a].merge(by[b], on="seed", suffixes=("_a", "_b"))
                for metric in ("ari", "nmi"):
                    rows.append((f"{name} {metric.upper()}", a, b,
                                 paired(both[f"{metric}_a"], both[f"{metric}_b"])))
        print()
        print("\n".join(table(rows)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--data", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    ap.add_argument("--in-process", action="store_true",
                    help="run the baselines in this process (no RSS; saves an import each)")
    ap.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    add_record_options(ap)
    args = ap.parse_args(argv)
    if args.child:
        method, csv, seed, out = args.child
        baseline(method, Path(csv), int(seed), Path(out))
        return 0
    if args.summary:
        summarise(args.summary)
        return 0
    t0 = time.time()
    for name in args.data:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                run_one(name, seed, Path(tmp), args.json, tuple(args.methods),
                        args.in_process)
    print(f"# done in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
