"""`GeoVAE`: the AnnData-facing VAE — setup (validate and prepare once), training, latent,
volume element, outputs, save/load. Subclasses bind another module class (`CGMVAE`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import torch
from scipy.special import logsumexp

from geovae import _keys as K
from geovae._rng import seeded
from geovae.data import (
    DataSource,
    DataSpec,
    Prepared,
    make_source,
    map_batches,
    prepare,
    setup_data,
)
from geovae.models.config import ModelConfig, complete_encoder_input, keyword_options, validate
from geovae.models.persistence import load_model, save_model, versions
from geovae.models.query import QueryMapping, load_query
from geovae.models.reference import ReferenceCells, training_cells
from geovae.models.registry import register
from geovae.modules import VAEModule
from geovae.nn.latents import LATENTS
from geovae.training import History, Trainer, TrainSettings, default_epochs, resolve_device
from geovae.training.parts import TEST_FRACTION


def _loss_history(h: History, epochs: int | None) -> dict[str, Any]:
    """The record's ``loss_history``: per-epoch train and validation -ELBO, each loss term,
    and (when this run trained) where the KL warm-up ended, in epochs."""
    out: dict[str, Any] = {
        "train": np.asarray(h.train, dtype=np.float32),
        "validation": np.asarray(h.validation, dtype=np.float32),
        "terms": {k: np.asarray(v, dtype=np.float32) for k, v in h.terms.items()}}
    if h.total_steps and epochs:
        out["warmup_epochs"] = float(h.warmup_steps * epochs / h.total_steps)
    return out


@register
class GeoVAE:
    """A VAE with a latent of the chosen geometry, fitted to one AnnData.

    Parameters
    ----------
    adata
        Cells x features. Validated and prepared once here.
    latent
        ``euclidean``, ``sphere`` (S^d, d + 1 coordinates) or ``hyperbolic`` (Lorentz H^d).
    latent_dim
        Intrinsic dimension d of the latent manifold.
    likelihood
        ``auto`` (NB for non-negative integer counts, else Gaussian), ``nb``, ``zinb``,
        ``gaussian`` or ``bernoulli``.
    layer
        AnnData layer with the data (default: X).
    batch_key
        obs column(s) of batch/condition covariates, fed to encoder and decoder.
    label_key
        obs column of labels (used by `CGMVAE`; coloured in plots).
    n_top_genes
        Use only the N most highly variable features.
    n_hidden, n_layers, dropout
        Network width, depth and dropout.
    seed
        Random seed: the same seed on the same device gives the same numbers.
    latent_options
        Geometry options: ``flow`` (RealNVP layers, euclidean), ``posterior``
        (``vmf`` or ``power-spherical``, sphere), ``max_kappa`` (sphere).
    model_options
        Module options (`CGMVAE` has more). Count data: ``encoder_input``, ``log1p`` of the
        raw counts or ``log1p_cp10k``, of counts scaled to 10,000 per cell (depth removed).
    """

    name: ClassVar[str] = "vae"
    module_class: ClassVar[type[VAEModule]] = VAEModule

    def __init__(
        self,
        adata: ad.AnnData,
        *,
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
    ):
        config = validate(model=self.name, latent=latent, latent_dim=latent_dim,
                          likelihood=likelihood, n_hidden=n_hidden, n_layers=n_layers,
                          dropout=dropout, seed=seed, latent_options=latent_options,
                          model_options=model_options,
                          known_model_options=self.module_options())
        batch_keys = [batch_key] if isinstance(batch_key, str) else list(batch_key or [])
        self.check_keys(batch_keys, label_key)
        spec, self.prepared, self.notes = setup_data(adata, likelihood, layer, batch_keys,
                                                     label_key, n_top_genes)
        config.likelihood = spec.likelihood
        self.adata = adata
        self._init(config, spec)

    def _init(self, config: ModelConfig, spec: DataSpec) -> None:
        """Build the module; shared by construction and `load`."""
        self.config, self.spec = config, spec
        LATENTS[config.latent].complete_options(config.latent_options)  # stored: from_saved
        self.complete_config()
        torch.manual_seed(config.seed)
        center = scale = None
        if spec.center is not None:
            center = torch.tensor(spec.center, dtype=torch.float32)
            scale = torch.tensor(spec.scale, dtype=torch.float32)
        self.module = self.module_class.from_config(config, spec.n_features, spec.n_covariates,
                                                    center, scale)
        self.history: History | None = None
        self.train_params: dict[str, Any] = {}
        self.device = torch.device("cpu")
        self._source: DataSource | None = None
        #: the cells a query is compared with (`get_reference_cells`): set by `load` (the
        #: model directory's reference.npz) and `load_query`; None for a model trained here
        self.reference_cells: ReferenceCells | None = None
        #: set by `load_query`: the model trains on a query, with what it froze
        self.query_mapping: QueryMapping | None = None

    @classmethod
    def check_keys(cls, batch_keys: list[str], label_key: str | None) -> None:
        """Refuse obs columns that cannot play the roles asked of them (the VAE takes any)."""

    @classmethod
    def module_options(cls) -> dict[str, Any]:
        """Options of the module class (``model_options``), with their defaults."""
        return keyword_options(cls.module_class.__init__, keyword_only=True)

    def complete_config(self) -> None:
        """Fill model options that follow from the data (`complete_encoder_input`)."""
        complete_encoder_input(self.config, self.module_class.count_encoder_input)

    @property
    def setup_notes(self) -> str:
        return "; ".join(self.notes)

    # ------------------------------------------------------------------ data
    def source(self, adata: ad.AnnData | None = None) -> DataSource:
        """Minibatch source of the training data (built once) or of ``adata`` (features
        matched by name)."""
        if adata is None or adata is self.adata:
            if self._source is None or self._source.device != self.device:
                if self.prepared is None:
                    raise ValueError("this model was loaded: pass the AnnData to embed")
                self._source = self.source_of(self.prepared)
            return self._source
        return self.source_of(self.prepare(adata))

    def prepare(self, adata: ad.AnnData) -> Prepared:
        """Align and check new data against the model's features and categories."""
        return prepare(adata, self.spec, new_data=True)

    def source_of(self, prepared: Prepared) -> DataSource:
        """In memory, or reading from disk for a backed AnnData (`BackedSource`)."""
        return make_source(prepared, self.spec.n_categories, self.device)

    # ------------------------------------------------------------------ training
    def train(self, epochs: int | None = None, batch_size: int = 128, lr: float = 1e-3,
              device: str = "auto", progress: bool = True, seed: int | None = None,
              **settings: Any) -> History | None:
        """Train on the AnnData given at construction (a `load_query` model: on the query,
        only what its freeze policy leaves free, without KL warm-up or weight decay); returns
        the loss history (a query model with nothing to train: the history it has).

        ``seed`` seeds the training (default: the model's); ``settings`` go to
        `geovae.training.TrainSettings` (patience, warmup_fraction, ``test_fraction``: not a
        query model, min(5%, 2,000) test cells by default, see `heldout_indices`).
        """
        self.device = resolve_device(device)
        query = self.query_mapping
        if query is not None:
            if not query.n_trainable:
                return self.history
            settings = query.train_settings(settings)
        else:
            settings.setdefault("test_fraction", TEST_FRACTION)
        epochs = default_epochs(self.prepared.n_obs) if epochs is None else epochs
        run = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr,
                            seed=self.config.seed if seed is None else seed, progress=progress,
                            **settings)
        with nullcontext() if query is None else query.frozen(self.module):
            self.history = Trainer(self.module, self.source(), run).fit()
        self.train_params = {"epochs": epochs, "epochs_run": len(self.history.train),
                             "batch_size": batch_size, "lr": lr, "device": str(self.device),
                             **({} if seed is None else {"seed": seed}),
                             **settings, "precision": self.history.precision}
        return self.history

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def get_latent(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """Posterior mean of each cell's latent, in the manifold's own coordinates."""
        return self.latent_of(self.source(adata))

    @torch.no_grad()
    def latent_of(self, source: DataSource) -> np.ndarray:
        self.module.eval()
        z = map_batches(source, lambda b: self.module.latent_mean(b.x, b.c))
        return z.numpy().astype(np.float32, copy=False)

    def get_volume(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """log sqrt(det JᵀJ) of the decoder mean at each cell's latent (tangent space on
        curved latents); for count models the mean is per unit library (proportions)."""
        return self.volume_of(self.source(adata))

    def volume_of(self, source: DataSource, batch_size: int = 256) -> np.ndarray:
        from geovae.geometry.volume import log_volume

        module = self.module.eval()
        basis = getattr(module.latent.manifold, "tangent_basis", None)

        def one_batch(b: Any) -> torch.Tensor:
            with torch.no_grad():
                z = module.latent_mean(b.x, b.c)
            out = torch.empty(len(b), device=z.device)
            keys = b.c if b.c is not None else torch.zeros(len(b), 1, device=z.device)
            for key in torch.unique(keys, dim=0):  # one decoder map per covariate combination
                rows = (keys == key).all(-1)
                ci = None if b.c is None else key[None]

                def f(zi: torch.Tensor, ci: torch.Tensor | None = ci) -> torch.Tensor:
                    return module.decoder_mean(zi[None], ci)[0]

                out[rows] = log_volume(f, z[rows], basis).detach().float()
            return out

        return map_batches(source, one_batch, batch_size).numpy()

    # ------------------------------------------------------------------ model checks
    @contextmanager
    def seeded(self, offset: int = 0) -> Iterator[None]:
        """Run a random computation with the model's seed (+ ``offset``), leaving torch's
        global RNG (and the GPU's) as it was."""
        with seeded(self.config.seed + offset, self.device):
            yield

    def heldout_indices(self, max_cells: int = 2000) -> tuple[np.ndarray, str]:
        """(cells, which): at most ``max_cells`` test cells, kept out of training and early
        stopping, and ``"test"``; without a test split the validation cells (early stopping's,
        optimistic), ``"validation"``; with no split (< 50 cells) every cell, ``"training"``."""
        if (h := self.history) is None or h.validation_indices is None:
            raise ValueError("the model has no training history: train it first")
        for cells, which in ((h.test_indices, "test"), (h.validation_indices, "validation")):
            if cells is not None and len(cells):
                return cells.cpu().numpy()[:max_cells].astype(np.int64), which
        return np.arange(min(self.source().n_obs, max_cells), dtype=np.int64), "training"

    @torch.no_grad()
    def log_marginal_of(self, source: DataSource, idx: np.ndarray, n_samples: int = 100,
                        batch_size: int = 256) -> np.ndarray:
        """Importance-sampled log p(x|c) in nats of the cells ``idx`` of ``source``
        (`VAEModule.log_marginal`, ``n_samples`` samples per cell, the model's seed)."""
        return logsumexp(self.log_weights_of(source, idx, n_samples, batch_size), axis=0) \
            - np.log(n_samples)

    @torch.no_grad()
    def log_weights_of(self, source: DataSource, idx: np.ndarray, n_samples: int = 100,
                       batch_size: int = 256) -> np.ndarray:
        """The importance log-weights (n_samples, cells) behind `log_marginal_of`."""
        self.module.eval()
        cells = torch.as_tensor(idx, dtype=torch.long, device=source.device)
        with self.seeded(1):
            out = [self.module.log_weights(b, n_samples).double().cpu()
                   for b in source.batches(cells, batch_size)]
        return torch.cat(out, dim=1).numpy() if out else np.zeros((n_samples, 0))

    @torch.no_grad()
    def predictive_moments(self, source: DataSource, idx: np.ndarray,
                           batch_size: int = 256) -> dict[str, np.ndarray]:
        """Per feature, over the cells ``idx``: mean, variance (ddof 1) and zero fraction of
        the data (``observed_*``) and of one posterior-predictive replicate per cell
        (``model_*``: z ~ q(z|x,c), x~ ~ p(x|z,c) with the cell's library; the model's seed)."""
        self.module.eval()
        cells = torch.as_tensor(idx, dtype=torch.long, device=source.device)
        sums = {k: torch.zeros(self.spec.n_features, dtype=torch.float64, device=source.device)
                for k in ("observed_1", "observed_2", "observed_0", "model_1", "model_2",
                          "model_0")}
        with self.seeded(2):
            for batch in source.batches(cells, batch_size):
                target = self.module.transform(batch.x)[1]
                for name, x in (("observed", target),
                                ("model", self.module.posterior_predictive(batch))):
                    x = x.double()
                    sums[f"{name}_1"] += x.sum(0)
                    sums[f"{name}_2"] += (x * x).sum(0)
                    sums[f"{name}_0"] += (x == 0).sum(0)
        n = max(len(idx), 1)
        out = {}
        for name in ("observed", "model"):
            mean = sums[f"{name}_1"] / n
            var = (sums[f"{name}_2"] - n * mean * mean).clamp_min(0) / max(n - 1, 1)
            out.update({f"{name}_mean": mean, f"{name}_var": var,
                        f"{name}_zero_frac": sums[f"{name}_0"] / n})
        return {k: v.cpu().numpy() for k, v in out.items()}

    # ------------------------------------------------------------------ outputs
    def write_outputs(self, adata: ad.AnnData, source: DataSource) -> dict[str, Any]:
        """Write the latent (and model-specific outputs) into ``adata``; returns run facts
        for the record."""
        z = self.latent_of(source)
        adata.obsm[K.REP] = z
        ball = self.module.latent.manifold.chart_coordinates(torch.as_tensor(z).double())
        if ball is not None:  # the Poincaré ball of a hyperbolic latent
            adata.obsm[K.REP_POINCARE] = ball.numpy().astype(np.float32)
        return {}

    def summary(self) -> dict[str, Any]:
        """Run metadata for ``uns['geovae']``."""
        latent, cfg = self.module.latent, self.config
        info: dict[str, Any] = {
            "model": self.name, "likelihood": self.spec.likelihood,
            "latent": {k: v for k, v in latent.config().items() if v is not None},
            "seed": cfg.seed, "n_features": self.spec.n_features, "versions": versions(),
            "params": {"latent": cfg.latent, "latent_dim": cfg.latent_dim, "n_hidden": cfg.n_hidden,
                       "n_layers": cfg.n_layers, "dropout": cfg.dropout, **self.train_params,
                       "layer": self.spec.layer or "X", "batch_keys": self.spec.batch_keys,
                       "label_key": self.spec.label_key or "",
                       "model_options": cfg.model_options_record(self.module_options())},
        }
        if self.history is not None:
            h = self.history
            info.update(final_losses=h.final(),
                        loss_history=_loss_history(h, self.train_params.get("epochs")),
                        best_epoch=int(h.best_epoch + 1), stopped_early=bool(h.stopped_early),
                        kl_warmup_steps=int(h.warmup_steps))
        return info

    # ------------------------------------------------------------------ persistence
    def get_reference_cells(self, adata: ad.AnnData | None = None,
                            umap_key: str | None = None) -> ReferenceCells | None:
        """The cells a query mapped onto this model is compared with, and what `save` keeps:
        `reference_cells` when set (loaded, or query-mapped), else the training cells, with
        the latent and the UMAP (``obsm[umap_key]``; default ``X_geovae_umap``, else
        ``X_umap``, e.g. after `geovae.cluster`) of ``adata`` (default the training AnnData)
        when they are there; None for a loaded model without any."""
        if self.reference_cells is not None:
            return self.reference_cells
        adata = self.adata if adata is None else adata
        obsm = {} if adata is None else adata.obsm
        umap = obsm.get(K.UMAP_GEOVAE, obsm.get(K.UMAP)) if umap_key is None \
            else obsm.get(umap_key)
        return training_cells(self, obsm.get(K.REP), umap)

    def save(self, path: str | os.PathLike) -> Path:
        """Save weights (weights-only torch file), config, feature list and preprocessing,
        and the reference cells for transfer (``reference.npz``, `get_reference_cells`), as
        ``geovae fit`` does.

        An existing ``path`` is replaced only if it is itself a geovae model directory.
        """
        return save_model(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> GeoVAE:
        """Load a model saved by `save` (or a ``geovae fit`` model directory); returns an instance
        of the class it was saved from."""
        return load_model(path, device)

    @classmethod
    def load_query(cls, query: ad.AnnData, reference: GeoVAE | str | os.PathLike, *,
                   freeze: str = "all", batch_key: str | list[str] | None = None,
                   label_key: str | None = None, reference_cells: ReferenceCells | None = None,
                   device: str = "auto") -> GeoVAE:
        """A copy of the ``reference`` model (a model or its directory; never modified) to be
        trained on ``query`` with `train`, as scvi-tools' ``load_query_data``: see
        `geovae.models.query` (``freeze``: ``all``, ``covariates`` or ``none``;
        ``reference_cells``: default the reference's, `get_reference_cells`)."""
        return load_query(cls, query, reference, freeze=freeze, batch_key=batch_key,
                          label_key=label_key, reference_cells=reference_cells, device=device)

    @classmethod
    def from_saved(cls, config: ModelConfig, spec: DataSpec) -> GeoVAE:
        """An untrained instance with a saved config and spec (no training data)."""
        LATENTS[config.latent].complete_options(config.latent_options, saved_before=True)
        model = cls.__new__(cls)
        model.adata, model.prepared, model.notes = None, None, []
        model._init(config, spec)
        return model
