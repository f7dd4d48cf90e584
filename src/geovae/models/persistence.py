"""Model directories: ``config.json`` (format, config, data spec, training parameters,
versions, history) and ``weights.pt`` (weights only). Writing is atomic; reading validates the
config with the same validator as the API and the CLI and says what is wrong."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geovae import _keys as K
from geovae.data import DataSpec
from geovae.errors import GeoVAEError, InputError
from geovae.io.write import atomic_dir
from geovae.models.config import ModelConfig
from geovae.models.registry import MODELS
from geovae.training import History, resolve_device

FORMAT = "geovae-model/2"
#: formats this release reads (1: geovae 0.1.0, spec features under "genes")
READABLE = ("geovae-model/1", FORMAT)
#: the files a model directory holds; a directory with anything else is not replaced
MODEL_FILES = frozenset({K.MODEL_CONFIG, K.MODEL_WEIGHTS, K.MODEL_ATLAS})
#: at most this many reference cells are kept in the model directory for transfer
ATLAS_CELLS = 50_000


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
    with its reference cells for transfer (`model_atlas`) when it has any."""
    atlas = model_atlas(model)
    with atomic_dir(path, replace_if=is_model_dir) as tmp:
        write_model_files(model, tmp)
        if atlas is not None:
            write_atlas(tmp, atlas, model.config.seed)
    return Path(path)


def reference_cells(model: Any, latent: np.ndarray | None = None,
                    umap: np.ndarray | None = None) -> dict[str, Any] | None:
    """The training cells a fitted model keeps for transfer: ``latent`` (computed when not
    given), label codes, ``umap`` (None when there is none) and per-cell ``nelbo`` (-ELBO:
    how well the model explains each cell). None for a model without training data (loaded)."""
    from geovae.models.transfer import negative_elbo

    if getattr(model, "prepared", None) is None:
        return None
    source = model.source()
    n = source.n_obs
    if latent is None or np.shape(latent)[0] != n:
        latent = model.latent_of(source)
    labels = model.prepared.labels if model.spec.label_key else None
    if umap is not None and np.shape(umap)[0] != n:
        umap = None
    return {"latent": np.asarray(latent, dtype=np.float32), "labels": labels,
            "umap": None if umap is None else np.asarray(umap, dtype=np.float32),
            "nelbo": negative_elbo(model, source)}


def model_atlas(model: Any) -> dict[str, Any] | None:
    """A model's reference cells: those it was loaded or transferred with (``model.atlas``),
    else its training cells (`reference_cells`), with the training AnnData's latent and UMAP
    (``obsm['X_geovae_umap']``, else ``obsm['X_umap']``, e.g. after `geovae.cluster`) when
    they are there; None for a model that has neither."""
    atlas = getattr(model, "atlas", None)
    if atlas:
        return atlas
    adata = getattr(model, "adata", None)
    obsm = {} if adata is None else adata.obsm
    umap = obsm.get(K.UMAP_GEOVAE, obsm.get(K.UMAP))
    return reference_cells(model, obsm.get(K.REP), umap)


def write_model_files(model: Any, directory: Path) -> None:
    """Write a model's files into the existing (staging) ``directory``."""
    from geovae import __version__
    from geovae.models.base import versions

    torch.save({k: v.cpu() for k, v in model.module.state_dict().items()},
               directory / K.MODEL_WEIGHTS)
    h = model.history
    meta = {"format": FORMAT, "geovae_version": __version__, "model": model.name,
            "config": model.config.to_dict(), "spec": model.spec.to_dict(),
            "train_params": model.train_params, "versions": versions(),
            "history": None if h is None else {"train": h.train, "validation": h.validation,
                                               "terms": h.terms, "best_epoch": h.best_epoch}}
    (directory / K.MODEL_CONFIG).write_text(json.dumps(meta, indent=1))


def write_atlas(directory: Path, arrays: dict[str, np.ndarray | None], seed: int = 0) -> None:
    """Save reference cells for transfer (``latent`` and, where known, ``labels`` codes,
    ``umap`` and per-cell ``nelbo``), subsampled to at most `ATLAS_CELLS`, as plain numpy
    arrays (read back without pickle)."""
    n = arrays["latent"].shape[0]
    keep = np.arange(n)
    if n > ATLAS_CELLS:
        keep = np.sort(np.random.default_rng(seed).choice(n, ATLAS_CELLS, replace=False))
    out = {k: np.asarray(v)[keep] for k, v in arrays.items() if v is not None}
    with open(directory / K.MODEL_ATLAS, "wb") as fh:
        np.savez_compressed(fh, **out)


def read_atlas(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """The reference cells saved with a model (None when the directory has none)."""
    f = Path(path) / K.MODEL_ATLAS
    if not f.is_file():
        return None
    try:
        with np.load(f, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError) as exc:
        raise InputError(f"model directory '{path}' is damaged: {K.MODEL_ATLAS} cannot be read "
                         f"({exc}); refit the model") from exc


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
        what = exc.message if isinstance(exc, GeoVAEError) else (
            f"missing {exc}" if isinstance(exc, KeyError) else str(exc))
        raise InputError(f"model directory '{p}' is damaged (written by geovae {writer}): "
                         f"{what}; refit the model",
                         param=exc.param if isinstance(exc, GeoVAEError) else None) from exc
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
    model.atlas = read_atlas(p)
    hist = meta.get("history")
    if isinstance(hist, dict):
        model.history = History(train=list(hist.get("train", [])),
                                validation=list(hist.get("validation", [])),
                                terms=dict(hist.get("terms", {})),
                                best_epoch=int(hist.get("best_epoch", -1)))
    return model
