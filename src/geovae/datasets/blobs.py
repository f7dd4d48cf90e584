"""Synthetic conditional-categorical "blobs" (the c*GMΔVAE thesis' toy data).

Each cell belongs to one blob b and one condition c. Its features are
``X = center_b + shift_c + N(0, I)``, with blob centres ``center_b ~ N(0, blob_scale^2 I)`` and
condition shifts ``shift_c ~ N(0, condition_shift^2 I)`` (condition ``cond0`` unshifted). The
shift moves every blob alike; with ``condition_shift > blob_scale`` the conditions are further
apart than the blobs, so a model that ignores the condition groups cells by condition.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from geovae.errors import OptionError

__all__ = ["make_blobs"]


def make_blobs(n_cells: int = 2000, n_features: int = 50, n_blobs: int = 5,
               n_conditions: int = 3, condition_shift: float = 2.0, blob_scale: float = 1.0,
               seed: int = 0) -> ad.AnnData:
    """Dense float32 Gaussian blobs with categorical ``obs['blob']`` and ``obs['condition']``.

    ``uns['blobs']`` holds the parameters, ``varm['centers']`` the blob centres and
    ``varm['shifts']`` the condition shifts (features x groups). Bad arguments raise
    `OptionError`.
    """
    if min(n_cells, n_features, n_blobs, n_conditions) < 1:
        raise OptionError("n_cells, n_features, n_blobs and n_conditions must be >= 1")
    if condition_shift < 0 or blob_scale <= 0:
        raise OptionError("condition_shift must be >= 0 and blob_scale > 0")
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, blob_scale, (n_blobs, n_features))
    shifts = rng.normal(0.0, condition_shift, (n_conditions, n_features))
    shifts[0] = 0.0
    blob = rng.integers(0, n_blobs, n_cells)
    cond = rng.integers(0, n_conditions, n_cells)
    X = centers[blob] + shifts[cond] + rng.normal(0.0, 1.0, (n_cells, n_features))
    blob_names = [f"blob{k}" for k in range(n_blobs)]
    cond_names = [f"cond{k}" for k in range(n_conditions)]
    obs = pd.DataFrame({
        "blob": pd.Categorical.from_codes(blob, blob_names),
        "condition": pd.Categorical.from_codes(cond, cond_names),
    }, index=[f"cell{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"feature{j}" for j in range(n_features)])
    adata = ad.AnnData(X=X.astype(np.float32), obs=obs, var=var)
    adata.varm["centers"] = centers.T.astype(np.float32)
    adata.varm["shifts"] = shifts.T.astype(np.float32)
    adata.uns["blobs"] = {"n_blobs": n_blobs, "n_conditions": n_conditions,
                          "condition_shift": float(condition_shift),
                          "blob_scale": float(blob_scale), "seed": seed}
    return adata
