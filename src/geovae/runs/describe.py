"""What a run read and what it is about to do, in log lines written before the long part
starts; and the hint that raw counts sit in a layer or ``.raw`` while X is normalised.

Nothing here decides anything: the lines describe the choices the model will make with the
same rules, and a failure to describe is never an error (the run itself reports errors)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import scipy.sparse as sp

from geovae.data.checks import auto_likelihood, auto_note, value_kind
from geovae.errors import GeoVAEError, Note

log = logging.getLogger("geovae.runs")
#: values checked at most for a matrix that is only a candidate (a layer, .raw)
HINT_VALUES = 1_000_000


def matrix_of(adata: Any, layer: str | None) -> Any:
    """The matrix a layer name means (X, a layer, or .raw restricted to the features)."""
    from geovae.data.checks import get_matrix
    from geovae.data.h5 import H5Matrix, backed_path, is_backed

    if is_backed(adata):
        return H5Matrix(backed_path(adata), layer)
    if layer in (None, "X"):
        return adata.X
    if layer in adata.layers:
        return adata.layers[layer]
    if layer == "raw" and adata.raw is not None:
        return adata.raw.X
    return get_matrix(adata, layer)


def describe_input(path: Path, adata: Any, fmt: str) -> str:
    from geovae.data.h5 import is_backed

    X = adata.X
    kind = "sparse" if sp.issparse(X) else "dense"
    dtype = getattr(X, "dtype", "?")
    if is_backed(adata):
        kind, dtype = "backed", "left on disk"
    extra = [f"layers: {', '.join(adata.layers.keys())}"] if len(adata.layers) else []
    if adata.raw is not None:
        extra.append(f".raw: {adata.raw.n_vars} features")
    more = f"; {'; '.join(extra)}" if extra else ""
    return (f"read {path} ({fmt}): {adata.n_obs} cells × {adata.n_vars} features "
            f"({kind} X, {dtype}{more})")


def describe_fit(adata: Any, options: dict[str, Any]) -> list[str]:
    """Log lines: the model, the data it will see, and how it will be trained."""
    import torch

    from geovae.training import default_epochs, resolve_device

    layer = options.get("layer")
    likelihood = str(options.get("likelihood", "auto"))
    try:
        kind = value_kind(matrix_of(adata, layer))
        if likelihood == "auto" and kind != "non-finite":
            likelihood = auto_note(kind, detail=True)
    except (GeoVAEError, KeyError, ValueError, TypeError):
        pass
    latent = options.get("latent", "euclidean")
    lat = f"{latent} (d={options.get('latent_dim', 10)}"
    for key, val in (options.get("latent_options") or {}).items():
        lat += f", {key} {val}"
    lat += ")"
    n_top = options.get("n_top_genes")
    features = (f"the {n_top} most variable of {adata.n_vars} features"
                if n_top and n_top < adata.n_vars else f"all {adata.n_vars} features")
    batch = [k for k in options.get("batch_key") or []]
    covariates = ", ".join(f"{k} ({_count(adata.obs[k].nunique(), 'category', 'categories')})"
                           if k in adata.obs else k for k in batch) or "none"
    label = options.get("label_key")
    labels = (f"{label} ({_count(adata.obs[label].nunique(), 'label')})"
              if label and label in adata.obs else label or "none")
    try:
        device = str(resolve_device(str(options.get("device", "auto"))))
    except GeoVAEError:
        device = str(options.get("device"))
    from geovae.training.distributed import world_size

    if world_size() > 1:  # under torchrun (rank 0 describes the run)
        device = f"{world_size()} processes (rank 0 on {device})"
    epochs = options.get("epochs")
    epochs_text = (f"up to {epochs if epochs else default_epochs(adata.n_obs)} epochs"
                   + ("" if epochs else " (default for this many cells)"))
    return [
        f"model: {options.get('model', 'vae')}, latent {lat}, likelihood {likelihood}",
        f"data: {layer if layer not in (None, 'X') else 'X'}, {features}, covariates: "
        f"{covariates}, labels: {labels}",
        f"training: {device}, {_threads(torch.get_num_threads())}, {epochs_text}, batch "
        f"{options.get('batch_size', 128)}, lr {options.get('lr', 1e-3)}, seed "
        f"{options.get('seed', 0)}",
    ]


def _threads(n: int) -> str:
    return _count(n, "thread")


def _count(n: int, one: str, many: str | None = None) -> str:
    """``1 category``, ``2 categories``."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def counts_hint(adata: Any, layer: str | None, likelihood: str) -> Note | None:
    """One line when X is not counts: where a layer or ``.raw`` holds counts for the same
    features (checked on about the first million values of each), or, with ``likelihood``
    auto, that none does and counts are preferred; None otherwise."""
    if layer not in (None, "X") or str(likelihood) not in ("auto", "nb", "zinb"):
        return None
    try:
        kind = value_kind(matrix_of(adata, None), limit=HINT_VALUES)
    except (GeoVAEError, TypeError, ValueError):
        return None
    if auto_likelihood(kind) == "nb" or kind == "non-finite":  # counts; or the checks refuse X
        return None
    what = "looks log-normalised" if kind == "non-negative" else "holds negative values (scaled?)"
    for name in sorted(adata.layers.keys(), key=lambda n: n not in ("counts", "raw_counts")):
        try:
            if value_kind(adata.layers[name], limit=HINT_VALUES) == "counts":
                return Note(f"X {what}; raw counts are in layers['{name}']: add "
                            f"{{layer={name!r}}} to model the counts")
        except (TypeError, ValueError):
            continue
    raw = adata.raw
    if raw is not None and adata.var_names.isin(raw.var_names).all():
        try:
            if value_kind(raw.X, limit=HINT_VALUES) == "counts":
                return Note(f"X {what}; raw counts are in .raw: add {{layer='raw'}} to "
                            "model the counts")
        except (TypeError, ValueError):
            return None
    if str(likelihood) == "auto":
        return Note(f"X {what} and no layer or .raw holds counts, so a Gaussian likelihood is "
                    "fitted; raw counts are preferred (negative binomial): they are usually kept "
                    "in layers['counts'] or .raw (then {layer='counts'} or {layer='raw'}). Data "
                    "that are not counts: {likelihood='gaussian'}")
    return None
