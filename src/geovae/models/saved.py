"""Checks of what a model directory holds besides its settings: the training history in
``config.json`` and the reference cells in ``reference.npz``. A damaged or hostile file is one
error naming the directory and what is wrong (exit code 2 on the command line) when the model
is loaded, never an internal error after work was done."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from geovae.errors import InputError


def _numbers(value: Any) -> bool:
    """A list of real numbers (NaN allowed: an epoch without validation)."""
    return isinstance(value, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isinf(v)
        for v in value)


def checked_history(hist: Any, path: str | os.PathLike) -> dict[str, Any] | None:
    """``config.json``'s ``history`` as the fields of `geovae.training.History` (None when
    the model was saved without one); anything else is an error naming the directory."""
    if hist is None:
        return None
    problem = None
    if not isinstance(hist, dict):
        problem = f"is a {type(hist).__name__}, not a JSON object"
    else:
        train, validation = hist.get("train", []), hist.get("validation", [])
        terms, best = hist.get("terms", {}), hist.get("best_epoch", -1)
        if not _numbers(train) or not _numbers(validation):
            problem = "'train' and 'validation' must be lists of numbers"
        elif not isinstance(terms, dict) or not all(
                isinstance(k, str) and _numbers(v) for k, v in terms.items()):
            problem = "'terms' must map names to lists of numbers"
        elif isinstance(best, bool) or not isinstance(best, int) or not -1 <= best < max(
                len(train), len(validation), 1):
            problem = f"'best_epoch' must be an epoch of the history, got {best!r}"
    if problem is not None:
        raise InputError(f"model directory '{path}' is damaged: the training history in "
                         f"config.json {problem}; refit the model (or restore config.json)")
    return {"train": list(train), "validation": list(validation), "terms": dict(terms),
            "best_epoch": int(best)}


def check_reference_cells(arrays: dict[str, Any], width: int, n_labels: int,
                          path: str | os.PathLike, name: str = "reference.npz") -> None:
    """The reference cells a model keeps: ``latent`` a finite (cells, ``width``) array of
    numbers, ``labels`` (cells,) whole numbers from -1 to ``n_labels`` - 1, ``umap``
    (cells, 2) and ``nelbo`` (cells,) numbers; fields other than ``latent`` may be missing."""

    def bad(what: str) -> InputError:
        return InputError(f"model directory '{path}' is damaged: {name} {what}; refit the "
                          "model (or remove reference.npz: transfer then works without the "
                          "reference cells)")

    latent = arrays.get("latent")
    if not isinstance(latent, np.ndarray) or latent.ndim != 2 or latent.dtype.kind not in "fiu":
        raise bad("holds no 2-D numeric array 'latent'")
    n = latent.shape[0]
    if latent.shape[1] != width:
        raise bad(f"has a latent {latent.shape[1]} columns wide, but the model's latent has "
                  f"{width} coordinates")
    if not np.isfinite(latent).all():
        raise bad("has NaN or infinite latent coordinates")
    shapes = {"labels": (n,), "umap": (n, 2), "nelbo": (n,), "log_library": (n,)}
    for key, shape in shapes.items():
        value = arrays.get(key)
        if value is None:
            continue
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu" \
                or value.shape != shape:
            got = value.shape if isinstance(value, np.ndarray) else type(value).__name__
            raise bad(f"member '{key}' must be a numeric array of shape {shape}, got {got}")
    labels = arrays.get("labels")
    if labels is not None and len(labels) and (
            labels.dtype.kind not in "iu" or labels.min() < -1 or labels.max() >= n_labels):
        raise bad(f"has label codes outside -1..{n_labels - 1} (-1: unlabelled; the model "
                  f"has {n_labels} label categories)")
