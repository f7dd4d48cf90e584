"""What the model trains on: feature set, likelihood, covariates and labels.

`DataSpec` is everything needed to turn *any* AnnData into the same tensors again (it is saved
with the model), so `embed` on new data matches features by name, never by position.
`obs_setup` reads the covariate and label columns it names (checked by
`geovae.data.setup.check_names` first).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import anndata as ad

from geovae.data.checks import category_strings, is_unlabelled
from geovae.errors import InputError

#: the smallest data geovae fits: fewer cells cannot give a neighbour graph and a held-out split
MIN_CELLS = 10
MIN_FEATURES = 2


@dataclass
class DataSpec:
    """How to build model inputs from an AnnData; JSON-serialisable."""

    features: list[str]
    likelihood: str
    layer: str | None = None
    batch_keys: list[str] = field(default_factory=list)
    batch_categories: list[list[str]] = field(default_factory=list)
    label_key: str | None = None
    label_categories: list[str] = field(default_factory=list)
    center: list[float] | None = None
    scale: list[float] | None = None

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_categories(self) -> list[int]:
        """Number of categories of each covariate key."""
        return [len(c) for c in self.batch_categories]

    @property
    def n_covariates(self) -> int:
        """Width of the one-hot covariate block (sum over covariate keys)."""
        return sum(self.n_categories)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        """From `to_dict` output; model directories of geovae 0.1.0 say ``genes``."""
        d = dict(d)
        if "genes" in d and "features" not in d:
            d["features"] = d.pop("genes")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown data spec field(s) {unknown}")
        return cls(**d)


def obs_setup(adata: ad.AnnData, batch_keys: list[str] | None, label_key: str | None
              ) -> tuple[list[str], list[list[str]], list[str]]:
    """(batch keys, their categories, label categories) of ``adata.obs`` (columns that
    `geovae.data.setup.check_names` found)."""
    batch_keys = list(batch_keys or [])
    categories = []
    for key in batch_keys:
        col = adata.obs[key]
        if col.isna().any():
            raise InputError(f"batch key '{key}' has missing values in "
                             f"{int(col.isna().sum())} cells; fill them first")
        categories.append(sorted(set(category_strings(col))))
    labels: list[str] = []
    if label_key is not None:
        col = adata.obs[label_key]
        labels = sorted(set(category_strings(col[~is_unlabelled(col)])))
        if not labels:
            raise InputError(f"label key '{label_key}' has no labelled cells")
    return batch_keys, categories, labels
