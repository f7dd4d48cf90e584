"""Model directories: ``config.json`` (format, config, data spec, training parameters,
versions, history), ``weights.pt`` (weights only) and ``reference.npz`` (the model's
`ReferenceCells`, when it has any). Writing is atomic; reading validates the
config with the same validator as the API and the CLI and says what is wrong."""

from __future__ import annotations

import json
import os
import platform
import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geovae import _keys as K
from geovae.data import DataSpec
from geovae.errors import GeoVAEError, InputError
from geovae.io.write import atomic_dir
from geovae.models.calibration import LabelTemperature
from geovae.models.config import ModelConfig
from geovae.models.reference import ReferenceCells
from geovae.models.registry import MODELS
from geovae.models.saved import check_reference_cells, checked_history
from geovae.training import History, resolve_device

FORMAT = "geovae-model/2"
#: formats this release reads (1: geovae 0.1.0, spec features under "genes")
READABLE = ("geovae-model/1", FORMAT)
#: the files a model directory holds; a directory with anything else is not replaced
MODEL_FILES = frozenset({K.MODEL_CONFIG, K.MODEL_WEIGHTS, K.MODEL_REFERENCE_CELLS})
#: at most this many reference cells are kept in the model directory for transfer
MAX_REFERENCE_CELLS = 50_000


def versions() -> dict[str, str]:
    """Versions of geovae and the libraries its numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("geovae", "torch", "anndata", "scanpy", "numpy", "scikit-learn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


def is_model_dir(path: str | os.PathLike) -> bool:
    """True for a directory geovae wrote: its config.json names a geovae model format, and it
    holds nothing but regular files with the names geovae writes (no folder, no link)."""
    p = Path(path)
    if p.is_symlink() or not p.is_dir():
        return False
    try:
        entries = list(p.iterdir())
        if not all(q.name in MODEL_FILES and stat.S_ISREG(os.lstat(q).st_mode)
                   for q in entries) or K.MODEL_CONFIG not in {q.name for q in entries}:
            return False
        fmt = json.loads((p / K.MODEL_CONFIG).read_text()).get("format", "")
    except (ValueError, OSError, AttributeError):
        return False
    return str(fmt).startswith("geovae-model/")


def save_model(model: Any, path: str | os.PathLike) -> Path:
    """Write ``model`` to the directory ``path`` (replacing only a geovae model directory),
    with its reference cells for transfer (``model.get_reference_cells()``) when it has any."""
    cells = model.get_reference_cells()
    with atomic_dir(path, replace_if=is_model_dir) as tmp:
        write_model_files(model, tmp)
        if cells is not None:
            write_reference_cells(tmp, cells, model.config.seed)
    return Path(path)


def write_model_files(model: Any, directory: Path) -> None:
    """Write a model's files into the existing (staging) ``directory``."""
    from geovae import __version__

    torch.save({k: v.cpu() for k, v in model.module.state_dict().items()},
               directory / K.MODEL_WEIGHTS)
    h = model.history
    meta = {"format": FORMAT, "geovae_version": __version__, "model": model.name,
            "config": model.config.to_dict(), "spec": model.spec.to_dict(),
            "train_params": model.train_params, "versions": versions(),
            "history": None if h is None else {"train": h.train, "validation": h.validation,
                                               "terms": h.terms, "best_epoch": h.best_epoch}}
    if isinstance(scaling := getattr(model, "label_temperature", None), LabelTemperature):
        meta["label_temperature"] = scaling.to_dict()
    if (resolution := getattr(model.module, "start_resolution", None)) is not None:
        meta["start_resolution"] = float(resolution)  # the c*GMΔVAE start's Leiden resolution
    if (candidates := getattr(model.module, "start_candidates", None)) is not None:
        meta["start_candidates"] = candidates  # and each resolution's clusters and ICL
    (directory / K.MODEL_CONFIG).write_text(json.dumps(meta, indent=1))


def start_candidates_ok(value: object) -> bool:
    """Whether a saved ``start_candidates`` has `mixture_start.start_candidates`' form."""
    return isinstance(value, dict) and bool(value) and all(
        isinstance(r, str) and isinstance(c, dict) and set(c) == {"clusters", "icl"}
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in c.values())
        for r, c in value.items())


def write_reference_cells(directory: Path, cells: ReferenceCells, seed: int = 0) -> None:
    """Save reference cells for transfer as ``reference.npz`` in ``directory``, subsampled to
    at most `MAX_REFERENCE_CELLS`, as plain numpy arrays (read back without pickle)."""
    with open(directory / K.MODEL_REFERENCE_CELLS, "wb") as fh:
        np.savez_compressed(fh, **cells.subsample(MAX_REFERENCE_CELLS, seed).arrays())


def read_reference_cells(path: str | os.PathLike) -> ReferenceCells | None:
    """The reference cells saved with a model (None when the directory has none)."""
    f = Path(path) / K.MODEL_REFERENCE_CELLS
    if not f.is_file():
        return None
    try:
        with np.load(f, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return ReferenceCells.from_arrays(arrays)
    except (ValueError, OSError, TypeError) as exc:
        raise InputError(f"model directory '{path}' is damaged: {K.MODEL_REFERENCE_CELLS} "
                         f"cannot be read ({exc}); refit the model") from exc


def load_model(path: str | os.PathLike, device: str = "cpu") -> Any:
    """Load a model directory; errors name the directory, what is wrong and who wrote it."""
    p = Path(path)
    if not (p / K.MODEL_CONFIG).is_file() or not (p / K.MODEL_WEIGHTS).is_file():
        raise InputError(f"'{p}' is not a geovae model directory (expected {K.MODEL_CONFIG} "
                         f"and {K.MODEL_WEIGHTS}; create one with geovae fit or model.save(path))")
    try:
        meta = json.loads((p / K.MODEL_CONFIG).read_text())
        if not isinstance(meta, dict):
            raise ValueError("config.json is not a JSON object")
    except (ValueError, OSError) as exc:
        raise InputError(f"model directory '{p}' is damaged: {K.MODEL_CONFIG} is not valid "
                         f"JSON ({exc}); refit the model") from exc
    writer = meta.get("geovae_version") or (meta.get("versions") or {}).get("geovae", "unknown")
    fmt = meta.get("format")
    if fmt not in READABLE:
        raise InputError(f"model directory '{p}' has format {fmt!r} (written by geovae "
                         f"{writer}); this geovae reads {', '.join(READABLE)}: refit the model "
                         "or use the geovae version that wrote it")
    try:
        cfg = dict(meta["config"])
        name = meta.get("model", cfg.get("model", "vae"))
        cls = MODELS[name] if name in MODELS else None
        if cls is None:
            raise ValueError(f"unknown model {name!r}")
        cfg["model"] = name
        config = ModelConfig.from_dict(cfg, cls.module_options())
        spec = DataSpec.from_dict(meta["spec"])
        model = cls.from_saved(config, spec)
    except (GeoVAEError, KeyError, TypeError, ValueError) as exc:
        # a setting of config.json is named as its field there (`n_layers`), not as a flag
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise InputError(f"model directory '{p}' is damaged (written by geovae {writer}): "
                         f"{K.MODEL_CONFIG}: {what}; refit the model") from exc
    model.device = resolve_device(device)
    try:
        state = torch.load(p / K.MODEL_WEIGHTS, map_location=model.device, weights_only=True)
        model.module.load_state_dict(state)
    except Exception as exc:  # torch raises many types for corrupt or mismatched files
        raise InputError(f"cannot load weights from '{p / K.MODEL_WEIGHTS}' (written by geovae "
                         f"{writer}): {' '.join(str(exc).split())[:300]}; refit the model"
                         ) from exc
    model.module.to(model.device).eval()
    model.train_params = meta.get("train_params", {})
    if "label_temperature" in meta:  # a model saved without one keeps T = 1
        model.label_temperature = LabelTemperature.from_saved(meta["label_temperature"], p)
    resolution = meta.get("start_resolution")  # a diagnostic: a malformed value is left out
    if isinstance(resolution, (int, float)) and not isinstance(resolution, bool) and resolution > 0:
        model.module.start_resolution = float(resolution)
    if start_candidates_ok(candidates := meta.get("start_candidates")):  # also a diagnostic
        model.module.start_candidates = candidates
    model.reference_cells = read_reference_cells(p)
    if model.reference_cells is not None:
        check_reference_cells(model.reference_cells.arrays(), model.module.latent.embed_dim,
                              len(model.spec.label_categories), p)
    hist = checked_history(meta.get("history"), p)
    if hist is not None:
        model.history = History(**hist)
    return model
