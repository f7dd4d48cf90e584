"""geovae vs scvi-tools' SCVI on the same sparse synthetic counts: speed, memory, clusters.

Run:  python benchmarks/bench_vs_scvi.py [--cells 20000] [--genes 2000] [--epochs 20]
          [--seeds 0 1 2] [--threads 1|0] [--defaults] [--scvi-python PY] [--write]

Data: `geovae.datasets.simulate_counts` (negative-binomial gamma-Poisson counts, CSR), 6 cell
types (the known labels), 2 batches (the batch key), median library size 200 and skewed gene
means, which gives ~91-92% zeros; fixed data seed (``--data-seed``), written once to
``--work/synthetic_<cells>x<genes>.h5ad``.

Each method runs in its own fresh process, one at a time, with ``--threads`` threads (default
1: OMP/MKL/OpenBLAS/numba thread counts 1, torch.set_num_threads(1); 0: no caps, each tool's
own default, i.e. every core). ``--defaults`` runs each tool the way a user types it
(``geovae fit INPUT --batch-key batch --epochs E``; ``SCVI(adata)`` with its ZINB and
``train(max_epochs=E)``) instead of the matched settings below:

- geovae: the ``geovae fit`` command (``python -m geovae fit``): Euclidean VAE, NB likelihood,
  ``--latent-dim 10 --batch-size 128 --batch-key batch --threads 1``; it trains (with its
  validation pass each epoch), embeds, builds the kNN graph, runs Leiden and UMAP, plots, and
  writes the .h5ad and the model.
- SCVI (scvi-tools, in its own venv): ``SCVI(n_latent=10, gene_likelihood="nb")`` (otherwise its
  defaults: n_hidden 128, one layer), ``train(max_epochs=E, batch_size=128,
  early_stopping=False)``, latent, then scanpy's defaults for ``neighbors`` (15 neighbours),
  the same Leiden call as geovae's (igraph flavour, 2 iterations, resolution 1), UMAP, a UMAP
  plot, and it writes the .h5ad and the model: what a user's full run costs.

Per run it records: seconds per epoch (the training call's wall time / epochs: for geovae the
``train`` phase of ``--metrics-json``, which also holds model setup and the latent of all
cells; for SCVI the wall time of ``model.train``; SCVI's own per-epoch times from a Lightning
callback are kept too), whole-process wall time (interpreter start to exit), peak RSS and CPU
seconds of that process (``os.wait4``'s rusage, taken by a small launcher process so the
child does not inherit this process's RSS high-water mark), /proc/loadavg before and after,
and ARI/NMI of the Leiden clusters against the true cell types (scored here, the same way for both).
The order of the two methods alternates with the seed. Prints mean ± sd over seeds and paired
tests (benchmarks/paired_stats.py); ``--write`` replaces the section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    ROOT,
    SCVI_PYTHON,
    VS_SCVI_DATA,
    cpu_model,
    launch,
    load_average,
    replace_section,
)
from paired_stats import fmt_p, paired, sd  # noqa: E402

SECTION = "## geovae vs scvi-tools (SCVI): speed, memory and clusters"
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}

SCVI_CHILD = r"""
import json, os, sys, time, warnings
t_start = time.perf_counter()
warnings.filterwarnings("ignore")
import torch
threads = int(os.environ.get("BENCH_THREADS", "1"))
defaults = os.environ.get("BENCH_DEFAULTS") == "1"
if threads:
    torch.set_num_threads(threads)
import scvi, scanpy as sc, anndata as ad
import scipy.sparse as sps
if not hasattr(sps.csr_array, "getnnz"):  # scanpy 1.11.5's neighbours call it; scipy 1.17
    sps.csr_array.getnnz = lambda self, axis=None: self._getnnz(axis=axis)  # dropped it
import lightning.pytorch as pl
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data, out = sys.argv[1], sys.argv[2]
epochs, seed, batch_size = map(int, sys.argv[3:6])
scvi.settings.seed = seed
if threads:
    scvi.settings.num_threads = threads
    torch.set_num_threads(threads)
scvi.settings.dl_num_workers = 0
ph = {}
t = time.perf_counter()
adata = ad.read_h5ad(data)
ph["read"] = time.perf_counter() - t

class EpochTimer(pl.Callback):
    def __init__(self):
        self.times = []
    def on_train_epoch_start(self, trainer, module):
        self._t = time.perf_counter()
    def on_train_epoch_end(self, trainer, module):
        self.times.append(time.perf_counter() - self._t)

t = time.perf_counter()
scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
if defaults:  # what a user types: n_latent 10, ZINB, batch 128, no early stopping
    model = scvi.model.SCVI(adata)
else:
    model = scvi.model.SCVI(adata, n_latent=10, gene_likelihood="nb")
ph["setup"] = time.perf_counter() - t
timer = EpochTimer()
t = time.perf_counter()
if defaults:
    model.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False,
                callbacks=[timer])
else:
    model.train(max_epochs=epochs, batch_size=batch_size, accelerator="cpu", devices=1,
                early_stopping=False, enable_progress_bar=False, callbacks=[timer])
ph["train"] = time.perf_counter() - t
t = time.perf_counter()
adata.obsm["X_scVI"] = model.get_latent_representation()
ph["latent"] = time.perf_counter() - t
t = time.perf_counter()
sc.pp.neighbors(adata, use_rep="X_scVI", n_neighbors=15, random_state=seed)
sc.tl.leiden(adata, resolution=1.0, random_state=seed, flavor="igraph", n_iterations=2,
             directed=False)
sc.tl.umap(adata, random_state=seed)
ph["cluster_umap"] = time.perf_counter() - t
t = time.perf_counter()
fig = sc.pl.umap(adata, color=["cell_type", "batch", "leiden"], show=False, return_fig=True)
fig.savefig(out[:-5] + ".umap.png", dpi=100)
plt.close(fig)
ph["plot"] = time.perf_counter() - t
t = time.perf_counter()
adata.write_h5ad(out)
model.save(out[:-5] + ".model", overwrite=True)
ph["write"] = time.perf_counter() - t
ph["total_in_python"] = time.perf_counter() - t_start
print(json.dumps({"phases": ph, "epoch_times": timer.times, "epochs": epochs,
                  "version": scvi.__version__, "torch": torch.__version__,
                  "threads": torch.get_num_threads(),
                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
                  "likelihood": model.module.gene_likelihood}))
"""

#: ``python -m geovae`` with the training loop's epoch boundaries recorded (the progress
#: report's hooks are wrapped; nothing else changes), written to $BENCH_EPOCHS_JSON at exit
GEOVAE_CHILD = r"""
import atexit, json, os, sys, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what python -m geovae sets
marks = []
import geovae.training.parts as parts
_enter, _advance = parts.Progress.__enter__, parts.Progress.advance
def enter(self):
    marks.append(time.perf_counter())
    return _enter(self)
def advance(self, msg):
    marks.append(time.perf_counter())
    _advance(self, msg)
parts.Progress.__enter__, parts.Progress.advance = enter, advance
atexit.register(lambda: open(os.environ["BENCH_EPOCHS_JSON"], "w").write(json.dumps(marks)))
sys.argv = ["geovae", *sys.argv[1:]]
from geovae.__main__ import main
main()
"""


def loadavg() -> str:
    return load_average(3)


def make_data(path: Path, cells: int, genes: int, seed: int) -> dict:
    """Write the synthetic counts (once) and return their description."""
    import anndata as ad

    if not path.exists():
        from geovae.datasets.simulate import simulate_counts

        a = simulate_counts(n_cells=cells, n_genes=genes, seed=seed, **VS_SCVI_DATA)
        a.obs = a.obs[["cell_type", "batch"]].copy()
        a.uns = {}
        tmp = path.with_name(path.name + ".tmp.h5ad")
        a.write_h5ad(tmp)
        os.replace(tmp, path)
    a = ad.read_h5ad(path)
    lib = np.asarray(a.X.sum(1)).ravel()
    return {"cells": a.n_obs, "genes": a.n_vars, "zeros": 1 - a.X.nnz / (a.n_obs * a.n_vars),
            "median_library": float(np.median(lib)), "types": int(a.obs.cell_type.nunique()),
            "batches": int(a.obs.batch.nunique()), "seed": seed}


def run_child(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd`` to completion; wall time, peak RSS and CPU of that process alone (through
    `_common.launch`: a child forked from this process would inherit its RSS high-water mark
    in ru_maxrss)."""
    load0 = loadavg()
    out_p, err_p = log.with_suffix(".stdout"), log.with_suffix(".stderr")
    with open(out_p, "w") as fo, open(err_p, "w") as fe:
        run = launch(cmd, log.with_suffix(".rusage"), fo, fe, env=env)
    stdout, stderr = out_p.read_text(), err_p.read_text()
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed ({run.returncode}):\n{stderr[-3000:]}")
    return {"wall_s": run.wall_s, "peak_rss_mb": run.peak_rss_mb, "cpu_s": run.cpu_s,
            "load_before": load0, "load_after": loadavg(), "stdout": stdout}


def scores(out_h5ad: Path, cluster_key: str) -> dict:
    import anndata as ad
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    a = ad.read_h5ad(out_h5ad)
    truth = a.obs["cell_type"].astype(str).to_numpy()
    clusters = a.obs[cluster_key].astype(str).to_numpy()
    return {"ari": float(adjusted_rand_score(truth, clusters)),
            "nmi": float(normalized_mutual_info_score(truth, clusters)),
            "n_clusters": int(len(set(clusters)))}


def clean_env() -> dict[str, str]:
    """This process's environment without thread caps (set per run by `thread_env`)."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_ENV}


def thread_env(args: argparse.Namespace) -> dict[str, str]:
    """Thread caps for a child: ``--threads N`` caps OpenMP/MKL/OpenBLAS/numba at N; 0
    leaves each tool to its own defaults (what a user gets)."""
    if not args.threads:
        return {"BENCH_THREADS": "0"}
    return {**{k: str(args.threads) for k in THREAD_ENV}, "BENCH_THREADS": str(args.threads)}


def run_geovae(data: Path, work: Path, seed: int, args: argparse.Namespace) -> dict:
    out = work / f"geovae_s{seed}.h5ad"
    metrics = work / f"geovae_s{seed}.metrics.json"
    marks = work / f"geovae_s{seed}.epochs.json"
    env = {**clean_env(), **thread_env(args), "PYTHONPATH": str(ROOT / "src"),
           "BENCH_EPOCHS_JSON": str(marks)}
    cmd = [sys.executable, "-c", GEOVAE_CHILD, "fit", str(data), "--out", str(out),
           "--model-dir", str(work / f"geovae_s{seed}.model"), "--batch-key", "batch",
           "--epochs", str(args.epochs), "--seed", str(seed), "--metrics-json", str(metrics),
           "--quiet", "--threads", str(args.threads)]
    if not args.defaults:
        cmd += ["--label-key", "cell_type", "--likelihood", "nb", "--latent", "euclidean",
                "--latent-dim", "10", "--batch-size", str(args.batch_size), "--device", "cpu"]
    r = run_child(cmd, env, work / f"geovae_s{seed}.log")
    m = json.loads(metrics.read_text())
    t = np.diff(json.loads(marks.read_text()))
    epochs = m["losses"]["epochs_run"]
    r.update(method="geovae", seed=seed, epochs=epochs, phases=m["timings"],
             s_per_epoch=float(t.mean()), train_call_s_per_epoch=m["timings"]["train"] / epochs,
             threads=m["threads"], versions=m["versions"], **scores(out, "geovae_cluster"))
    return r


def scvi_env(args: argparse.Namespace) -> dict[str, str]:
    """The scVI child's environment: no thread caps but ``--threads``'s, no PYTHONPATH, and
    OpenMP's own wait policy (spinning): importing geovae in this process (`make_data` does)
    sets OMP_WAIT_POLICY=PASSIVE here, which the child would otherwise inherit or not
    depending on whether the data file already existed."""
    env = {**clean_env(), **thread_env(args), "BENCH_DEFAULTS": "1" if args.defaults else "0"}
    env.pop("PYTHONPATH", None)
    env.pop("OMP_WAIT_POLICY", None)
    return env


def run_scvi(data: Path, work: Path, seed: int, args: argparse.Namespace) -> dict:
    out = work / f"scvi_s{seed}.h5ad"
    env = scvi_env(args)
    cmd = [args.scvi_python, "-c", SCVI_CHILD, str(data), str(out), str(args.epochs),
           str(seed), str(args.batch_size)]
    r = run_child(cmd, env, work / f"scvi_s{seed}.log")
    info = json.loads(r["stdout"].strip().splitlines()[-1])
    r.update(method="scvi", seed=seed, epochs=info["epochs"], phases=info["phases"],
             s_per_epoch=float(np.mean(info["epoch_times"])),
             train_call_s_per_epoch=info["phases"]["train"] / info["epochs"],
             threads=info["threads"], likelihood=info.get("likelihood", "nb"),
             omp_wait_policy=info.get("omp_wait_policy", "not recorded"),
             versions={"scvi-tools": info["version"],
                                                "torch": info["torch"]},
             **scores(out, "leiden"))
    return r


RUNNERS = {"geovae": run_geovae, "scvi": run_scvi}
#: (record key, label, unit, format, higher is better)
METRICS = [("s_per_epoch", "s / epoch (epoch loop)", "s", "{:.2f}", False),
           ("train_call_s_per_epoch", "s / epoch (training call / epochs)", "s", "{:.2f}",
            False),
           ("wall_s", "whole process", "s", "{:.1f}", False),
           ("peak_rss_mb", "peak RSS", "MB", "{:.0f}", False),
           ("cpu_s", "CPU (user + sys)", "s", "{:.1f}", False),
           ("ari", "ARI (Leiden vs cell types)", "", "{:.3f}", True),
           ("nmi", "NMI (Leiden vs cell types)", "", "{:.3f}", True),
           ("n_clusters", "Leiden clusters", "", "{:.1f}", True)]


def summarise(records: list[dict], seeds: list[int]) -> list[str]:
    """Markdown: mean ± sd per method, paired differences and time ratios."""
    by = {m: {r["seed"]: r for r in records if r["method"] == m} for m in RUNNERS}
    seeds = [s for s in seeds if s in by["geovae"] and s in by["scvi"]]

    def vals(m: str, key: str) -> np.ndarray:
        return np.array([by[m][s][key] for s in seeds], dtype=float)

    lines = ["| measure | geovae | SCVI | geovae - SCVI (paired) | paired t p | Wilcoxon p |",
             "|---|---|---|---|---|---|"]
    for key, label, unit, f, _ in METRICS:
        g, c = vals("geovae", key), vals("scvi", key)
        d = paired(g, c)
        u = f" {unit}" if unit else ""
        lines.append(f"| {label} | {f.format(g.mean())} ± {f.format(sd(g))}{u} | "
                     f"{f.format(c.mean())} ± {f.format(sd(c))}{u} | "
                     f"{d['diff']:+.3g} ± {d['sd']:.2g}{u} | {fmt_p(d['p_t'])} | "
                     f"{fmt_p(d['p_w'])} |")
    lines += ["", "| time ratio SCVI / geovae (per seed) | mean ± sd | per seed | "
              "log-ratio > log 2: paired t p (one-sided) |", "|---|---|---|---|"]
    for key in ("s_per_epoch", "train_call_s_per_epoch", "wall_s"):
        g, c = vals("geovae", key), vals("scvi", key)
        ratio = c / g
        # H0: ratio <= 2, tested on log(SCVI) - log 2 vs log(geovae), paired, one-sided
        d = paired(np.log(c) - np.log(2.0), np.log(g))
        p1 = d["p_t"] / 2 if d["diff"] > 0 else 1 - d["p_t"] / 2
        label = next(lb for k, lb, *_ in METRICS if k == key)
        lines.append(f"| {label} | {ratio.mean():.2f} ± {sd(ratio):.2f} | "
                     + ", ".join(f"{x:.2f}" for x in ratio) + f" | {fmt_p(p1)} |")
    return lines


def per_run(records: list[dict]) -> list[str]:
    lines = ["| seed | order | method | s/epoch loop | s/epoch call | whole s | peak RSS MB | "
             "CPU s | ARI | NMI | clusters | load before | load after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['seed']} | {r['order']} | {r['method']} | {r['s_per_epoch']:.2f} | "
                     f"{r['train_call_s_per_epoch']:.2f} | {r['wall_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['cpu_s']:.1f} | {r['ari']:.3f} | "
                     f"{r['nmi']:.3f} | {r['n_clusters']} | {r['load_before']} | "
                     f"{r['load_after']} |")
    return lines


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores (shared VM), no GPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=20000)
    ap.add_argument("--genes", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1,
                    help="threads per process (0: each tool's default, every core)")
    ap.add_argument("--defaults", action="store_true",
                    help="each tool at its defaults (geovae fit INPUT --batch-key batch "
                         "--epochs E; SCVI(adata) (ZINB) and train(max_epochs=E)) instead of "
                         "the matched settings (NB, latent 10, batch 128 for both)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=list(RUNNERS), choices=list(RUNNERS))
    ap.add_argument("--scvi-python", default=SCVI_PYTHON,
                    help="python of a virtual environment with scvi-tools (benchmarks/_common.py)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_vs_scvi",
                    help="data, outputs and logs of the runs")
    ap.add_argument("--json", type=Path, help="also write every run's record here")
    ap.add_argument("--write", action="store_true", help="replace the section of RESULTS.md")
    ap.add_argument("--from-json", type=Path,
                    help="no runs: tabulate the records a --json run saved")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        desc, records = saved["data"], saved["records"]
        args.seeds = list(dict.fromkeys(r["seed"] for r in records))
        args.cells, args.genes, args.epochs = desc["cells"], desc["genes"], records[0]["epochs"]
        args.threads = records[0].get("threads_arg", 1)
        args.defaults = records[0].get("defaults", False)
        return report(args, desc, records)
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"synthetic_{args.cells}x{args.genes}_s{args.data_seed}.h5ad"
    desc = make_data(data, args.cells, args.genes, args.data_seed)
    print(f"data: {desc}", flush=True)
    records: list[dict] = []
    for i, seed in enumerate(args.seeds):
        order = args.methods if i % 2 == 0 else args.methods[::-1]
        for pos, method in enumerate(order):
            r = RUNNERS[method](data, args.work, seed, args)
            r.update(order=pos + 1, threads_arg=args.threads, defaults=args.defaults)
            r.pop("stdout", None)
            records.append(r)
            print(f"seed {seed} {method}: {r['s_per_epoch']:.2f} s/epoch (loop), "
                  f"{r['train_call_s_per_epoch']:.2f} s/epoch (call), {r['wall_s']:.1f} s "
                  f"whole, {r['peak_rss_mb']:.0f} MB, ARI {r['ari']:.3f} NMI {r['nmi']:.3f} "
                  f"({r['n_clusters']} clusters); load {r['load_before']} -> "
                  f"{r['load_after']}", flush=True)
            if args.json:
                args.json.write_text(json.dumps({"data": desc, "records": records}, indent=1))
    if set(args.methods) == set(RUNNERS):
        report(args, desc, records)


def report(args: argparse.Namespace, desc: dict, records: list[dict]) -> None:
    """Print (and with --write, store) the markdown section."""
    versions = {m: next(r["versions"] for r in records if r["method"] == m) for m in RUNNERS}
    cmd = (f"python benchmarks/bench_vs_scvi.py --cells {args.cells} --genes {args.genes} "
           f"--epochs {args.epochs} --seeds {' '.join(map(str, args.seeds))} --threads "
           f"{args.threads}" + (" --defaults" if args.defaults else "")
           + (" --write" if args.write else ""))
    threads = ("Every process used its tool's default threads (no OMP/MKL/numba caps; geovae "
               "`--threads 0`, torch's default for SCVI): both cores"
               if not args.threads else
               f"Every process used {args.threads} thread(s) (OMP/MKL/OpenBLAS/numba "
               f"{args.threads}, torch.set_num_threads({args.threads}))")
    if args.defaults:
        settings = (f"Each tool at its defaults: `geovae fit INPUT --batch-key batch --epochs "
                    f"{args.epochs}` (NB, latent 10, batch 128, early stopping, held-out "
                    "IWAE + PPC, kNN, Leiden, UMAP 100 epochs, plot, write) vs `SCVI(adata)` "
                    f"(ZINB, latent 10) `.train(max_epochs={args.epochs})` (batch 128), "
                    "latent, scanpy neighbors + Leiden + UMAP (200 epochs), plot, write.")
    else:
        settings = ("Both: n_latent 10, n_hidden 128, one hidden layer, NB likelihood, batch "
                    f"size {args.batch_size}, {args.epochs} epochs, no early stopping.")
    text = "\n".join([
        SECTION, "",
        f"Command: `{cmd}` (tabulated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). "
        f"Machine: {machine()}, shared with other agents' jobs: timings are noisy; the load "
        "average (1, 5, 15 min) before and after each run is in the per-run table. "
        f"{threads}; one process at a time; the method order alternates with the seed.",
        "",
        f"Data: {desc['cells']} cells x {desc['genes']} genes of negative-binomial counts "
        f"(`simulate_counts`, seed {desc['seed']}), CSR, {100 * desc['zeros']:.1f}% zeros, "
        f"median library {desc['median_library']:.0f}, {desc['types']} cell types (the "
        f"labels), {desc['batches']} batches (the batch key). {settings}",
        f"Versions: geovae {versions['geovae'].get('geovae', '?')} (torch "
        f"{versions['geovae'].get('torch', '?')}); scvi-tools "
        f"{versions['scvi']['scvi-tools']} (torch {versions['scvi']['torch']}).",
        "",
        f"Mean ± sd over {len(args.seeds)} seeds (ddof 1); paired by seed:",
        "", *summarise(records, args.seeds), "",
        "Per run:", "", *per_run(records), ""])
    print(text)
    if args.write:
        replace_section(ROOT / "benchmarks" / "RESULTS.md", SECTION, text)


if __name__ == "__main__":
    main()
