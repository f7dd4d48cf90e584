"""`GeoVAE`: the AnnData-facing model — setup, training, latent, save/load."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch

from geovae.data import DataSpec, Prepared, prepare, setup_data
from geovae.errors import InputError, OptionError
from geovae.io import atomic_dir
from geovae.module import build_module
from geovae.train import CellTensors, History, default_epochs, resolve_device, train_module

WEIGHTS, CONFIG = "weights.pt", "config.json"


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


class GeoVAE:
    """A VAE (or the c*GMΔVAE) fitted to one AnnData.

    Parameters mirror ``geovae fit``: ``latent`` (euclidean/sphere/hyperbolic), ``latent_dim``
    (the manifold's intrinsic dimension), ``likelihood`` (auto/nb/zinb/gaussian/bernoulli),
    ``layer`` (counts layer; X by default), ``batch_key`` (one or several obs columns),
    ``label_key``, ``n_top_genes``, network sizes, ``seed``.
    """

    def __init__(
        self,
        adata: ad.AnnData | None = None,
        *,
        model: str = "vae",
        latent: str = "euclidean",
        latent_dim: int = 10,
        likelihood: str = "auto",
        layer: str | None = None,
        batch_key: str | list[str] | None = None,
        label_key: str | None = None,
        n_top_genes: int | None = None,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        seed: int = 0,
        latent_options: dict[str, Any] | None = None,
        model_options: dict[str, Any] | None = None,
        _spec: DataSpec | None = None,
    ):
        if latent_dim < 1:
            raise OptionError("--latent-dim must be at least 1")
        if _spec is None:
            if adata is None:
                raise ValueError("GeoVAE needs an AnnData (or use GeoVAE.load)")
            batch_keys = [batch_key] if isinstance(batch_key, str) else list(batch_key or [])
            _spec, self.setup_notes = setup_data(adata, likelihood, layer, batch_keys,
                                                 label_key, n_top_genes)
        else:
            self.setup_notes = ""
        self.spec = _spec
        self.adata = adata
        self.config: dict[str, Any] = {
            "model": model, "latent": latent, "latent_dim": int(latent_dim),
            "likelihood": self.spec.likelihood, "n_hidden": n_hidden, "n_layers": n_layers,
            "dropout": dropout, "seed": seed, "latent_options": dict(latent_options or {}),
            "model_options": dict(model_options or {}),
        }
        if model != "vae":
            self.config["model_options"].setdefault("n_labels", len(self.spec.label_categories))
        torch.manual_seed(seed)
        center = scale = None
        if self.spec.center is not None:
            center = torch.tensor(self.spec.center, dtype=torch.float32)
            scale = torch.tensor(self.spec.scale, dtype=torch.float32)
        self.module = build_module(self.config, self.spec.n_genes, self.spec.n_batch,
                                   center, scale)
        self.history: History | None = None
        self.train_params: dict[str, Any] = {}
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ training
    def train(self, epochs: int | None = None, batch_size: int = 128, lr: float = 1e-3,
              device: str = "auto", progress: bool = True, **kwargs: Any) -> History:
        """Train on the AnnData given at construction; returns the loss history."""
        if self.adata is None:
            raise ValueError("this model has no training data (it was loaded); use embed")
        self.device = resolve_device(device)
        prepared = prepare(self.adata, self.spec)
        epochs = default_epochs(self.adata.n_obs) if epochs is None else epochs
        data = self._tensors(prepared)
        self.history = train_module(self.module, data, epochs=epochs, batch_size=batch_size,
                                    lr=lr, seed=self.config["seed"], progress=progress,
                                    **kwargs)
        self.train_params = {"epochs": epochs, "epochs_run": len(self.history.train),
                             "batch_size": batch_size, "lr": lr, "device": str(self.device),
                             **{k: v for k, v in kwargs.items() if v is not None}}
        return self.history

    def _tensors(self, prepared: Prepared) -> CellTensors:
        n_cats = [len(c) for c in self.spec.batch_categories]
        return CellTensors(prepared.X, prepared.batch, prepared.labels, n_cats, self.device)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def get_latent(self, adata: ad.AnnData | None = None, batch_size: int = 1024,
                   new_data: bool = False) -> np.ndarray:
        """Posterior mean of each cell's latent, in the manifold's own coordinates."""
        adata = self.adata if adata is None else adata
        prepared = prepare(adata, self.spec, new_data=new_data)
        return self.latent_from(prepared, batch_size)

    @torch.no_grad()
    def latent_from(self, prepared: Prepared, batch_size: int = 1024) -> np.ndarray:
        data = self._tensors(prepared)
        self.module.eval()
        out = []
        for start in range(0, data.n_obs, batch_size):
            idx = torch.arange(start, min(start + batch_size, data.n_obs), device=self.device)
            out.append(self.module.latent_mean(data.rows(idx), data.covariates(idx)).cpu())
        return torch.cat(out).numpy().astype(np.float32)

    def log_volume(self, adata: ad.AnnData, batch_size: int = 256) -> np.ndarray:
        """log sqrt(det JᵀJ) of the decoder mean at each cell's latent (tangent space on curved
        latents); for count models the mean is taken per unit library (proportions)."""
        from geovae.volume import log_volume

        prepared = prepare(adata, self.spec, new_data=True)
        z = torch.as_tensor(self.latent_from(prepared), device=self.device)
        data = self._tensors(prepared)
        manifold = self.module.latent.manifold
        basis = getattr(manifold, "tangent_basis", None)
        out = torch.empty(data.n_obs)
        self.module.eval()
        for start in range(0, data.n_obs, batch_size):
            idx = torch.arange(start, min(start + batch_size, data.n_obs), device=self.device)
            c = data.covariates(idx)
            keys = c if c is not None else torch.zeros(len(idx), 1, device=self.device)
            # cells sharing a covariate combination share one decoder map
            for key in torch.unique(keys, dim=0):
                rows = (keys == key).all(-1)
                ci = None if c is None else key

                def f(zi: torch.Tensor, ci: torch.Tensor | None = ci) -> torch.Tensor:
                    return self.module.decoder_mean(zi[None], None if ci is None else ci[None])[0]

                zs = z[idx[rows]]
                out[idx[rows].cpu()] = log_volume(f, zs, basis).detach().cpu().float()
        return out.numpy()

    # ------------------------------------------------------------------ metadata
    def summary(self) -> dict[str, Any]:
        """Run metadata for ``uns['geovae']`` (h5ad-writable: no None values)."""
        latent = self.module.latent
        info: dict[str, Any] = {
            "model": self.config["model"], "likelihood": self.spec.likelihood,
            "latent": {k: v for k, v in latent.config().items() if v is not None},
            "seed": self.config["seed"], "n_features": self.spec.n_genes,
            "versions": versions(),
            "params": _clean({**{k: v for k, v in self.config.items()
                                 if k not in ("latent_options", "model_options")},
                              **self.train_params,
                              "layer": self.spec.layer or "X",
                              "batch_keys": self.spec.batch_keys,
                              "label_key": self.spec.label_key or ""}),
        }
        if self.history is not None:
            info["final_losses"] = _clean(self.history.final())
            info["loss_history"] = {"train": np.asarray(self.history.train, dtype=np.float32),
                                    "validation": np.asarray(self.history.validation,
                                                             dtype=np.float32)}
            info["best_epoch"] = int(self.history.best_epoch + 1)
            info["stopped_early"] = bool(self.history.stopped_early)
            info["kl_warmup_steps"] = int(self.history.warmup_steps)
        return info

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Save weights (weights-only torch file), config, gene list and preprocessing."""
        with atomic_dir(path) as tmp:
            torch.save({k: v.cpu() for k, v in self.module.state_dict().items()}, tmp / WEIGHTS)
            meta = {"format": "geovae-model/1", "config": self.config, "spec": self.spec.to_dict(),
                    "train_params": self.train_params, "versions": versions(),
                    "history": None if self.history is None else {
                        "train": self.history.train, "validation": self.history.validation,
                        "best_epoch": self.history.best_epoch}}
            (tmp / CONFIG).write_text(json.dumps(meta, indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> GeoVAE:
        """Load a model saved by `save` (or by ``geovae fit --model-dir``)."""
        p = Path(path)
        if not (p / CONFIG).is_file() or not (p / WEIGHTS).is_file():
            raise InputError(f"'{p}' is not a geovae model directory (expected {CONFIG} and "
                             f"{WEIGHTS}; create one with geovae fit --model-dir)")
        try:
            meta = json.loads((p / CONFIG).read_text())
            spec = DataSpec.from_dict(meta["spec"])
            cfg = meta["config"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"model config '{p / CONFIG}' is damaged: {exc}") from exc
        model = cls(None, model=cfg["model"], latent=cfg["latent"],
                    latent_dim=cfg["latent_dim"], likelihood=cfg["likelihood"],
                    n_hidden=cfg["n_hidden"], n_layers=cfg["n_layers"], dropout=cfg["dropout"],
                    seed=cfg["seed"], latent_options=cfg.get("latent_options"),
                    model_options=cfg.get("model_options"), _spec=spec)
        model.device = resolve_device(device)
        try:
            state = torch.load(p / WEIGHTS, map_location=model.device, weights_only=True)
            model.module.load_state_dict(state)
        except Exception as exc:
            raise InputError(f"cannot load weights from '{p / WEIGHTS}': {exc}") from exc
        model.module.to(model.device).eval()
        model.train_params = meta.get("train_params", {})
        return model


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """Drop None values and make lists h5ad-friendly."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            v = np.asarray([str(x) for x in v]) if v else np.asarray([], dtype=str)
        out[k] = v
    return out
