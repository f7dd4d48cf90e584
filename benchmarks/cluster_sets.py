"""The development sets of `bench_clusters.py` (issue 24) and what its rows share: the
data drawn per seed (`load`; the sets are described in bench_clusters.py's docstring),
components in use, Leiden at resolution 1, and a fit's epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: types in every development set but ``medium10`` (`n_types`)
N_TYPES = 5
#: a component is in use at this share of the cells (`geovae.models.cgmvae.USED_SHARE`)
USED_SHARE = 0.005
#: simulation levels: `simulate_counts` arguments
LEVELS = {"easy": {"n_cells": 2000, "n_genes": 300, "de_prob": 0.1, "de_scale": 1.0},
          "hard": {"n_cells": 2000, "n_genes": 300, "de_prob": 0.05, "de_scale": 0.8},
          "medium": {"n_cells": 2000, "n_genes": 300, "de_prob": 0.07, "de_scale": 0.9},
          "issue": {"n_cells": 4000, "n_genes": 500},
          "issue2k": {"n_cells": 2000, "n_genes": 500},
          # the medium level with 10 types on 3,000 cells (issue 24 item 2: 10 true types)
          "medium10": {"n_cells": 3000, "n_genes": 300, "de_prob": 0.07, "de_scale": 0.9,
                       "n_types": 10}}
#: real sets (file in data/, truth column, batch column or None): ``kang`` the bundled Kang
#: subset (10 types, batch ``stim``), ``pbmc68k`` the bundled pbmc68k (``bulk_labels``)
REAL = {"kang": ("kang_counts.h5ad", "seurat_annotations", "stim"),
        "pbmc68k": ("pbmc68k_counts.h5ad", "bulk_labels", None)}
#: ``rare``: the medium level with its first type cut to this share of the cells
RARE_SHARE = 0.02


def load(name: str, seed: int) -> tuple[Any, dict[str, Any], str]:
    """(adata, fit kwargs, truth column) of a development set drawn with ``seed``."""
    from geovae.datasets import make_blobs, simulate_counts

    if name in LEVELS or name == "rare":
        level = {"n_types": N_TYPES, **LEVELS["medium" if name == "rare" else name]}
        a = simulate_counts(n_conditions=3, condition_prob=0.2, seed=seed, **level)
        if name == "rare":  # the first type cut to 2% of the cells
            first = (a.obs["cell_type"] == a.obs["cell_type"].cat.categories[0]).to_numpy()
            keep = int(round(RARE_SHARE * (~first).sum() / (1 - RARE_SHARE)))
            a = a[~first | (np.cumsum(first) <= keep)].copy()
        return a, {"likelihood": "nb"}, "cell_type"
    if name == "blobs":
        a = make_blobs(n_cells=2000, n_features=50, n_blobs=N_TYPES, n_conditions=3, seed=seed)
        return a, {"likelihood": "gaussian"}, "blob"
    if name == "digits":  # scikit-learn's 8 x 8 digits (integer pixels: NB, as `auto` reads them)
        import anndata as ad
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        keep = np.sort(np.random.default_rng(seed).choice(len(y), int(0.9 * len(y)),
                                                          replace=False))
        a = ad.AnnData(x[keep].astype(np.float32), obs={"digit": y[keep].astype(str)})
        a.obs["condition"] = "one"
        return a, {"likelihood": "nb"}, "digit"
    if name in REAL:  # a seeded 90 % subsample of a bundled real set: the draw varies
        import anndata as ad

        file, truth, batch = REAL[name]
        a = ad.read_h5ad(Path(__file__).resolve().parents[1] / "data" / file)
        keep = np.sort(np.random.default_rng(seed).choice(a.n_obs, int(0.9 * a.n_obs),
                                                          replace=False))
        a = a[keep].copy()
        a.obs["condition"] = a.obs[batch].astype(str) if batch else "one"
        return a, {"likelihood": "nb"}, truth
    if name == "kang_full":  # bench_donors' kang_stim: 3,000 cells of the full Kang data
        from bench_donors import draw  # (without the bundled ones) per seed, 2,000 HVGs

        a, batch, truth = draw("kang_stim", seed)
        a.obs["condition"] = a.obs[batch]
        return a, {"likelihood": "nb"}, truth
    raise ValueError(name)


#: the labels of the real sets (Kang's ``seurat_annotations``, pbmc68k's ``bulk_labels``, digits)
REAL_TYPES = {"kang": 10, "kang_full": 10, "pbmc68k": 10, "digits": 10}


def n_types(name: str) -> int:
    """The true types of a development set (K = ``truth``)."""
    return REAL_TYPES.get(name) or LEVELS.get(name, {}).get("n_types", N_TYPES)


def n_used(pred: np.ndarray) -> int:
    """Components that are the argmax of >= `USED_SHARE` of the cells (and >= 1)."""
    counts = np.unique(pred, return_counts=True)[1]
    return int((counts >= max(1, np.ceil(USED_SHARE * len(pred)))).sum())


def leiden(adata: Any, rep: str, seed: int) -> np.ndarray:
    import scanpy as sc

    sc.pp.neighbors(adata, use_rep=rep, random_state=seed)
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, directed=False, resolution=1.0,
                 random_state=seed)
    return adata.obs["leiden"].to_numpy()


def epochs_of(adata: Any) -> tuple[int, int]:
    """(best epoch, 1-based; epochs run) of the fit whose record ``adata`` holds."""
    info = adata.uns["geovae"]
    return int(info["best_epoch"]), len(info["loss_history"]["validation"])
