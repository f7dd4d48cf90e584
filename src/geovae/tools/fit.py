"""Scanpy-style verbs that train or apply a model on one AnnData: ``fit`` and ``embed``."""

from __future__ import annotations

import os
from typing import Any

import anndata as ad
import numpy as np

from geovae import _keys as K
from geovae._threads import threaded
from geovae.errors import OptionError
from geovae.models import GeoVAE, model_class
from geovae.tools.record import update_record
from geovae.training.distributed import is_main


@threaded
def fit(
    adata: ad.AnnData,
    *,
    model: str = "vae",
    latent: str = "euclidean",
    latent_dim: int = 10,
    likelihood: str = "auto",
    layer: str | None = None,
    batch_key: str | list[str] | None = None,
    label_key: str | None = None,
    n_top_genes: int | None = None,
    latent_options: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    n_hidden: int = 128,
    n_layers: int = 1,
    dropout: float = 0.1,
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    device: str = "auto",
    precision: str = "auto",
    torch_compile: bool = False,
    threads: int | None = 0,
    seed: int = 0,
    volume: bool = False,
    progress: bool = True,
    heldout_samples: int = 20,
    check_cells: int = 2000,
) -> GeoVAE:
    """Train a model on ``adata`` and write its latent and outputs into ``adata``.

    Parameters
    ----------
    adata
        Cells x features (counts or continuous values).
    model
        ``vae`` (`geovae.GeoVAE`) or ``cgmvae`` (`geovae.CGMVAE`, the c*GMΔVAE).
    latent, latent_dim, likelihood, layer, batch_key, label_key, n_top_genes,
    latent_options, model_options, n_hidden, n_layers, dropout, seed
        See `geovae.GeoVAE` (and `geovae.CGMVAE` for ``model_options``).
    epochs
        Maximum epochs (default: scales with the number of cells, 400 up to 20k cells);
        early stopping on a 10% validation split keeps the best weights. A test split of
        min(5%, 2,000) cells (drawn first, with ``seed``) is kept out of both, for the
        held-out log-likelihood: the model trains on the other ~85% of the cells.
    batch_size, lr
        Minibatch size and AdamW learning rate.
    device
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    precision
        Hidden layers in the training steps: ``auto`` (bfloat16 autocast on a CUDA GPU that
        supports it, else float32), ``32`` or ``bf16``; heads, likelihood and loss, validation
        and inference stay float32 (see `geovae.training.TrainSettings`).
    torch_compile
        ``torch.compile`` the training step's forward: faster steps after a compilation of
        seconds to tens of seconds; worth it for long runs (opt-in).
    threads
        CPU threads for torch during the call (the earlier count is restored after it), as
        the command line's threads option: 0 (default) ``OMP_NUM_THREADS`` when set, else the
        CPUs this process may use, at most 4 (`geovae._threads.default_threads`); on a shared
        machine, the cores you were given.
    volume
        Also write the decoder's volume element ``obs['geovae_volume']``.
    progress
        Show a progress bar (a line per 25 epochs when stderr is not a terminal).
    heldout_samples
        Importance samples per test cell of the held-out log-likelihood (0: skip it). The
        default 20 cost 4% of a 10-epoch fit on 20k cells (100 samples: 22%;
        benchmarks/RESULTS.md, "Fixed costs of a fit"); the record gives the estimate's
        standard error over cells and its gain over half as many samples: 100 or more for a
        converged bound.
    check_cells
        At most this many cells enter the held-out estimate (test cells) and the posterior
        predictive check (a seeded random subset of all cells).

    Returns
    -------
    The trained model. Under torchrun (several processes, `geovae.training.distributed`)
    every rank trains and only rank 0 writes into ``adata``.

    Sets the following fields
    -------------------------
    ``adata.obsm['X_geovae']``
        Latent posterior mean (d + 1 columns on sphere and hyperboloid).
    ``adata.obsm['X_geovae_poincare']``
        Hyperbolic latents: Poincaré-ball coordinates.
    ``adata.obsm['geovae_cluster_probs']``, ``adata.obs['geovae_label']``
        cgmvae: mixture probabilities; predicted labels with ``label_key``.
    ``adata.obs['geovae_volume']``
        With ``volume``.
    ``adata.uns['geovae']``
        The run record (model, likelihood, latent, losses, versions, notes), with
        ``heldout_loglik`` (importance-sampled log p(x) of the test cells, which training and
        early stopping never saw: min(5%, 2,000) cells drawn with ``seed``; per cell and per
        feature in nats, its standard error, samples and cells used; a predictive
        log-likelihood for the c*GMΔVAE with global weights; see
        `geovae.tools.evaluate.heldout_loglik`) and, for count likelihoods, ``ppc`` (observed vs
        posterior-predictive per-gene mean, variance and zero fraction; see
        `geovae.tools.evaluate.posterior_predictive_check`).
    """
    from geovae.tools.evaluate import model_checks

    check_heldout_samples(heldout_samples)
    trained = train_model(adata, model=model, latent=latent, latent_dim=latent_dim,
                          likelihood=likelihood, layer=layer, batch_key=batch_key,
                          label_key=label_key, n_top_genes=n_top_genes,
                          latent_options=latent_options, model_options=model_options,
                          n_hidden=n_hidden, n_layers=n_layers, dropout=dropout, epochs=epochs,
                          batch_size=batch_size, lr=lr, device=device, seed=seed,
                          progress=progress, precision=precision,
                          torch_compile=torch_compile)
    if not is_main():  # several processes trained together: rank 0 alone infers and writes
        return trained
    source = trained.source()
    facts = trained.write_outputs(adata, source)
    if volume:
        adata.obs[K.VOLUME] = trained.volume_of(source)
    checks, notes = model_checks(trained, heldout_samples, check_cells)
    update_record(adata, fresh=True, **trained.summary(), **facts, **checks,
                  notes=(trained.notes + notes) or None)
    return trained


#: the latent dimension of a fit, and of a fit of a table (``geovae fit table.csv``): on the
#: development set, the sklearn digits table (``data/digits.csv.gz``, 90 % subsamples, seeds
#: 0-2), d = 20 gave Leiden clusters closer to the labels than d = 10 (ARI 0.84 vs 0.81 with
#: the resolution chosen from the data; 5 seeds in `benchmarks/bench_tables.py`: 0.83 vs 0.81;
#: `benchmarks/results/tables_2026-12-06.md`)
DEFAULT_LATENT_DIM = 10
TABLE_LATENT_DIM = 20


def default_latent_dim(latent_dim: int | None, fmt: str) -> int:
    """The user's latent dimension, else `TABLE_LATENT_DIM` for a table (``fmt`` from
    `geovae.io.read.input_format`) and `DEFAULT_LATENT_DIM` otherwise."""
    if latent_dim is not None:
        return latent_dim
    return TABLE_LATENT_DIM if fmt == "table" else DEFAULT_LATENT_DIM


def check_heldout_samples(heldout_samples: Any) -> None:
    """``heldout_samples`` is a whole number >= 0."""
    if isinstance(heldout_samples, bool) or not isinstance(heldout_samples, (int, np.integer)) \
            or heldout_samples < 0:
        raise OptionError("{opt} must be a whole number >= 0 (0: no held-out "
                          "log-likelihood)", param="heldout_samples")


def check_fit_options(*, model: str = "vae", latent: str = "euclidean", latent_dim: int = 10,
                      likelihood: str = "auto", n_hidden: int = 128, n_layers: int = 1,
                      dropout: float = 0.1, seed: int = 0,
                      latent_options: dict[str, Any] | None = None,
                      model_options: dict[str, Any] | None = None,
                      batch_key: str | list[str] | None = None, label_key: str | None = None,
                      epochs: int | None = None, batch_size: int = 128, lr: float = 1e-3,
                      precision: str = "auto", heldout_samples: int = 20, **_: Any) -> None:
    """The checks of `fit`'s options that need no data (sizes within their limits, seed,
    learning rate, the roles of the obs columns), for a run to make before reading its input;
    `fit` makes them again."""
    from geovae.models.config import validate
    from geovae.training import TrainSettings

    cls = model_class(model)
    validate(model=model, latent=latent, latent_dim=latent_dim, likelihood=likelihood,
             n_hidden=n_hidden, n_layers=n_layers, dropout=dropout, seed=seed,
             latent_options=latent_options, model_options=model_options,
             known_model_options=cls.module_options())
    batch_keys = [batch_key] if isinstance(batch_key, str) else list(batch_key or [])
    cls.check_keys(batch_keys, label_key)
    check_heldout_samples(heldout_samples)
    TrainSettings(epochs=1 if epochs is None else epochs, batch_size=batch_size, lr=lr,
                  precision=precision).check()


def train_model(adata: ad.AnnData, *, model: str = "vae", epochs: int | None = None,
                batch_size: int = 128, lr: float = 1e-3, device: str = "auto",
                progress: bool = True, precision: str = "auto", torch_compile: bool = False,
                **options: Any) -> GeoVAE:
    """Build and train a model on ``adata`` without writing into it (the first half of `fit`;
    ``options`` are the model's, see `geovae.GeoVAE`)."""
    trained = model_class(model)(adata, **options)
    trained.train(epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                  progress=progress, precision=precision, torch_compile=torch_compile)
    return trained


@threaded
def embed(adata: ad.AnnData, model: GeoVAE | str | os.PathLike, *, device: str = "cpu",
          volume: bool = False, threads: int | None = 0) -> GeoVAE:
    """Embed ``adata`` with a trained model; features are matched by name.

    Missing features are filled with zeros and reported in the run record; features the model
    does not know are ignored. ``threads``: torch's CPU threads during the call, as in `fit`.

    Sets the following fields
    -------------------------
    The same as `fit`, plus ``adata.uns['geovae']['n_missing_features']``,
    ``['missing_features']`` and ``['n_extra_features']``.
    """
    if not isinstance(model, GeoVAE):
        model = GeoVAE.load(model, device=device)
    prepared = model.prepare(adata)
    source = model.source_of(prepared)
    facts = model.write_outputs(adata, source)
    if volume:
        adata.obs[K.VOLUME] = model.volume_of(source)
    missing = np.asarray(prepared.missing_features[:1000], dtype=str)
    update_record(adata, fresh=True, **model.summary(), **facts,
                  n_missing_features=prepared.n_missing_features,
                  missing_features=missing if len(missing) else None,
                  n_extra_features=prepared.n_extra_features)
    return model
