"""The pure-torch VAE: encoder, pluggable latent, decoder, likelihood, and the -ELBO.

No AnnData here: `VAEModule` works on tensors (counts or features ``x``, one-hot covariates
``c``) so it can be tested and reused on its own. `geovae.models.GeoVAE` wraps it for AnnData.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributions import Distribution

from geovae.errors import OptionError
from geovae.modules.base import BaseModule, Batch, LossOutput
from geovae.nn.latents import Latent, make_latent
from geovae.nn.layers import AheadDropout, draw_masks, mlp
from geovae.nn.likelihoods import NONZERO_ENTRIES, make_likelihood, summed_log_prob
from geovae.nn.sparse_linear import SparseRows, feature_major, sparse_linear

#: attribute `VAEModule.prepare` sets on a count block: (its encoder input as `SparseRows`,
#: the covariates it goes with, its library size), read by `hidden_of` and `library_of`
PREPARED_INPUT = "_geovae_prepared_input"
#: attribute of a training batch's ``x``: the trunks' dropout masks (`VAEModule.draw_ahead`)
DROPOUT_MASKS = "_geovae_dropout_masks"
#: what a count model's encoder sees (`VAEModule.transform`): ``log1p`` of the raw counts, or
#: ``log1p_cp10k``, log1p of the counts scaled to `CP10K` per cell (depth divided out: the
#: decoder gets the library size anyway, so the latent need not carry it)
ENCODER_INPUTS = ("log1p", "log1p_cp10k")
#: counts per cell ``log1p_cp10k`` scales each cell to
CP10K = 1e4


def check_encoder_input(value: str | None, counts: bool = True) -> str | None:
    """``value`` if it is one of `ENCODER_INPUTS` (None: the model's default), else an
    `OptionError`; any value for a likelihood that is not of counts is an error too."""
    if value is not None and value not in ENCODER_INPUTS:
        raise OptionError(f"unknown {{opt}} '{value}': use " + " or ".join(ENCODER_INPUTS),
                          param="encoder_input")
    if value is not None and not counts:
        raise OptionError(f"{{opt}} '{value}' applies to count likelihoods (nb, zinb) only: "
                          "drop it for other data (they are standardised or used as they are)",
                          param="encoder_input")
    return value


def repeat_samples(t: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """``t`` (B, ...) stacked ``n`` times sample-major, (n * B, ...): row ``s * B + i`` is
    cell i's copy for sample s (so ``.view(n, B)`` recovers samples x cells)."""
    return None if t is None else t.repeat(n, *([1] * (t.dim() - 1)))


class VAEModule(BaseModule):
    """VAE with a swappable latent geometry and likelihood, conditional on covariates."""

    #: floats one importance-sampling block may hold per (row x width) tensor; bounds memory
    marginal_block_elements: int = 2**21
    #: ``encoder_input`` of a count likelihood when none is given (`ENCODER_INPUTS`)
    count_encoder_input: str = "log1p"

    def __init__(
        self,
        n_features: int,
        latent: Latent,
        likelihood: str = "nb",
        n_covariates: int = 0,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        center: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        *,
        encoder_input: str | None = None,
    ):
        super().__init__()
        self.n_features, self.n_covariates = n_features, n_covariates
        self.latent = latent
        self.likelihood = make_likelihood(likelihood, n_hidden, n_features)
        counts = self.likelihood.encoder_transform == "log1p"
        #: `ENCODER_INPUTS` for a count likelihood (default `count_encoder_input`), else None
        self.encoder_input = check_encoder_input(encoder_input, counts) or (
            self.count_encoder_input if counts else None)
        self.encoder = mlp(n_features + n_covariates, n_hidden, n_layers, dropout)
        if counts:  # read from sparse rows on the CPU (`hidden_of`): stored feature-major
            feature_major(self.encoder[0])
        self.decoder = mlp(latent.decoder_dim + n_covariates, n_hidden, n_layers, dropout)
        self.register_buffer("center", center if center is not None else torch.zeros(n_features))
        self.register_buffer("scale", scale if scale is not None else torch.ones(n_features))

    @classmethod
    def from_config(cls, config: Any, n_features: int, n_covariates: int,
                    center: torch.Tensor | None = None, scale: torch.Tensor | None = None
                    ) -> VAEModule:
        """Build the module a validated `geovae.models.config.ModelConfig` describes."""
        latent = make_latent(config.latent, config.latent_dim, config.n_hidden,
                             **config.latent_options)
        return cls(n_features, latent, config.likelihood, n_covariates, config.n_hidden,
                   config.n_layers, config.dropout, center, scale, **config.model_options)

    def covariate_layers(self) -> list[tuple[str, int]]:
        """The linear layers the one-hot covariates enter, as (module name, index of the first
        covariate column): what transfer grows when a query brings new categories."""
        return [("encoder.0", self.n_features), ("decoder.0", self.latent.decoder_dim)]

    def loss(self, batch: Batch, kl_weight: float = 1.0) -> LossOutput:
        """-ELBO of a `Batch` (what the trainer calls)."""
        return self(batch.x, batch.c, batch.labels, kl_weight=kl_weight)

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (encoder input, reconstruction target, library size) for raw ``x``."""
        kind = self.likelihood.encoder_transform
        library = x.sum(-1, keepdim=True)
        if kind == "log1p":
            return torch.log1p(self.depth_scaled(x, library)), x, library
        if kind == "standardize":
            xs = (x - self.center) / self.scale
            return xs, xs, library
        return x, x, library

    def depth_scaled(self, counts: torch.Tensor, library: torch.Tensor,
                     rows: torch.Tensor | None = None) -> torch.Tensor:
        """``counts`` as the encoder's log1p takes them: as they are (``log1p``) or scaled to
        `CP10K` per cell (``log1p_cp10k``; ``library`` (cells, 1), ``rows`` the cell of each
        entry when ``counts`` are a sparse block's non-zeros). A cell without counts stays 0."""
        if self.encoder_input != "log1p_cp10k":
            return counts
        factor = CP10K / torch.where(library > 0, library, torch.ones_like(library))
        return counts * (factor if rows is None else factor[rows, 0])

    def hidden(self, x_in: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """The encoder's last hidden layer (shared by every posterior head)."""
        return self.encoder(x_in if c is None else torch.cat([x_in, c], dim=-1))

    def hidden_of(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """`hidden` of the raw data ``x``: ``hidden(transform(x)[0], c)``, the same numbers up to
        float rounding.

        A count block that carries its non-zeros (`NONZERO_ENTRIES`, the CPU's sparse rows)
        is transformed (`depth_scaled`, log1p) at those entries only, and the encoder's first
        layer reads them as they are (`geovae.nn.sparse_linear`): no dense log1p, no
        concatenated copy, and both of the layer's products a step over the non-zeros alone.
        Those entries come from `prepare` where it ran (on the batch-building thread)."""
        pre = getattr(x, PREPARED_INPUT, None)
        if pre is not None and pre[1] is c:
            return self._hidden_sparse(pre[0], c)
        sp = self._sparse_rows(x)
        if sp is None:
            return self.hidden(self.transform(x)[0], c)
        return self._hidden_sparse(sp, c)

    def _hidden_sparse(self, sp: SparseRows, c: torch.Tensor | None) -> torch.Tensor:
        """The encoder on the block ``sp`` and covariates ``c``: its first layer on the
        non-zeros (`sparse_linear`), or the dense block where its trunk runs in autocast."""
        first = self.encoder[0]
        if self.encoder.autocast_dtype is not None or not isinstance(first, torch.nn.Linear):
            return self.encoder(sp.dense(c))
        h = sparse_linear(sp, c, first)
        for layer in list(self.encoder)[1:]:
            h = layer(h)
        return h

    def _sparse_counts(self, x: torch.Tensor) -> Any:
        """``x``'s attached non-zeros (`NONZERO_ENTRIES`) where the encoder reads them (a 2-D
        count block of a log1p encoder), else None."""
        nz = getattr(x, NONZERO_ENTRIES, None)
        if nz is None or self.likelihood.encoder_transform != "log1p" or x.dim() != 2:
            return None
        return nz

    def _sparse_rows(self, x: torch.Tensor, library: torch.Tensor | None = None
                     ) -> SparseRows | None:
        """transform(x)[0] at ``x``'s non-zero entries (``library``: ``x``'s row sums, computed
        where not given and needed); None where ``x`` has none attached or the encoder does
        not take log1p."""
        nz = self._sparse_counts(x)
        if nz is None:
            return None
        if library is None and self.encoder_input == "log1p_cp10k":
            library = x.sum(-1, keepdim=True)
        values = torch.log1p(self.depth_scaled(nz.values, library, nz.rows))
        return SparseRows.of(nz.rows, nz.cols, values, nz.row_ends, x.shape[1])

    def prepare(self, batch: Batch) -> Batch:
        """The encoder's sparse input (`hidden_of`) and the library size, computed from the
        data alone (see `BaseModule.prepare`)."""
        if self._sparse_counts(batch.x) is None:
            return batch
        library = batch.x.sum(-1, keepdim=True)
        sp = self._sparse_rows(batch.x, library)
        if sp is not None:
            setattr(batch.x, PREPARED_INPUT, (sp, batch.c, library))
        return batch

    def draw_ahead(self, batch: Batch, generator: torch.Generator) -> Batch:
        """The encoder's and decoder's dropout masks for this batch, drawn here (on the
        batch-building thread, CPU): ~0.1 ms a mask less in the step (`AheadDropout`)."""
        drops = self._ahead_dropouts()
        if drops and batch.x.device.type == "cpu" and batch.x.dim() == 2:
            width = self.encoder[0].out_features
            setattr(batch.x, DROPOUT_MASKS,
                    draw_masks(drops, batch.x.shape[0], width, generator,
                               self.encoder[0].weight.dtype))
        return batch

    def _ahead_dropouts(self) -> list[AheadDropout]:
        """The dropout layers of the encoder's and decoder's trunks, in the order they run."""
        return [m for m in (*self.encoder, *self.decoder) if isinstance(m, AheadDropout)]

    def _arm_dropouts(self, x: torch.Tensor) -> None:
        """Hand each trunk dropout its mask drawn ahead for ``x`` (`draw_ahead`), if any."""
        masks = getattr(x, DROPOUT_MASKS, None)
        for i, d in enumerate(self._ahead_dropouts()):
            d.waiting = None if masks is None else masks[i]

    def target_and_library(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`transform`'s reconstruction target and library size, without the encoder input."""
        if self.likelihood.encoder_transform == "standardize":
            return self.transform(x)[1:]
        return x, self.library_of(x)

    def library_of(self, x: torch.Tensor) -> torch.Tensor:
        """`transform`'s library size of raw ``x`` (``prepare``'s where it ran), alone."""
        pre = getattr(x, PREPARED_INPUT, None)
        return x.sum(-1, keepdim=True) if pre is None else pre[2]

    def encode(self, x_in: torch.Tensor, c: torch.Tensor | None) -> Distribution:
        """q(z|x,c) from the transformed data ``x_in``."""
        return self.latent(self.hidden(x_in, c))

    def decode(self, z: torch.Tensor, c: torch.Tensor | None, library: torch.Tensor
               ) -> Distribution:
        z = self.latent.decoder_features(z)
        h = self.decoder(z if c is None else torch.cat([z, c], dim=-1))
        return self.likelihood(h, library)

    def decoder_mean(self, z: torch.Tensor, c: torch.Tensor | None = None,
                     library: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Mean of p(x|z) (proportions when ``library`` is 1 for count models)."""
        lib = torch.as_tensor(library, dtype=z.dtype, device=z.device)
        if lib.dim() == 0:
            lib = lib.expand(*z.shape[:-1], 1)
        return self.decode(z, c, lib).mean

    @torch.no_grad()
    def latent_mean(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        x_in, _, _ = self.transform(x)
        return self.latent.mean(self.encode(x_in, c))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, kl_weight: float = 1.0) -> LossOutput:
        """-ELBO of the minibatch (``labels`` unused here; the mixture model uses them)."""
        self._arm_dropouts(x)
        target, library = self.target_and_library(x)
        q = self.latent(self.hidden_of(x, c))
        z, log_q = self.latent.rsample(q)
        px = self.decode(z, c, library)
        reconstruction = -summed_log_prob(px, target)
        kl = self.latent.kl(q, z, log_q)
        loss = (reconstruction + kl_weight * kl).mean()
        return LossOutput(loss, reconstruction, kl,
                          {"reconstruction": reconstruction, "kl_z": kl})

    # ------------------------------------------------------------------ evaluation
    def log_joint_and_proposal(self, x: torch.Tensor, c: torch.Tensor | None, n_samples: int
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The overridable piece of `log_marginal`: draw ``n_samples`` independent latents
        per cell from the proposal and return (log p(x, latents | c), log q(latents | x, c)),
        each (n_samples, B), sample-major.

        Contract for subclasses (a model with other latent variables or another prior, e.g. a
        mixture prior): both terms must be exact log-densities w.r.t. the same base measure of
        every sampled latent variable, the proposal must be what is sampled from, and the
        likelihood term is that of the reconstruction target (``transform``'s second output;
        `log_marginal` adds the Jacobian of the standardisation). Runs under ``no_grad`` in
        eval mode (set by `log_marginal`). A subclass that changes ``forward`` must override
        this (the base refuses: its prior would be the wrong one).

        Here: z ~ q(z|x,c) (encoder run once, the head repeated), log q exact for every latent
        (the flow's change of variables, vMF / Power Spherical ``log_prob``, the wrapped
        normal's log q returned with its sample), log p(z) the latent's prior, and
        log p(x|z,c) summed over features.
        """
        if type(self).forward is not VAEModule.forward:
            raise NotImplementedError(f"{type(self).__name__} changes the generative model: "
                                      "it must override log_joint_and_proposal")
        x_in, target, library = self.transform(x)
        h = self.hidden(x_in, c)
        q = self.latent(repeat_samples(h, n_samples))
        z, log_q = self.latent.rsample(q)
        if log_q is None:
            log_q = q.log_prob(z)
        log_pz = self.latent.prior(z).log_prob(z)
        cs = repeat_samples(c, n_samples)
        px = self.decode(z, cs, repeat_samples(library, n_samples))
        log_px = summed_log_prob(px, repeat_samples(target, n_samples))
        return (log_px + log_pz).view(n_samples, len(x)), log_q.view(n_samples, len(x))

    @torch.no_grad()
    def log_marginal(self, batch: Batch, n_samples: int = 100) -> torch.Tensor:
        """Importance-sampled log p(x|c) per cell (nats), (B,): the IWAE estimate

            log (1/S) sum_s p(x|z_s,c) p(z_s) / q(z_s|x,c),   z_s ~ q(z|x,c),  S = n_samples.

        A lower bound in expectation that rises with S towards log p(x|c) (Burda et al. 2016).
        Count likelihoods condition on the observed library size; for standardised (Gaussian)
        data the Jacobian -sum(log scale) is added, so the density is that of the input values.
        The log-sum-exp of `log_weights`; see there for blocks, mode and RNG.
        """
        return torch.logsumexp(self.log_weights(batch, n_samples), 0) - math.log(n_samples)

    @torch.no_grad()
    def log_weights(self, batch: Batch, n_samples: int = 100) -> torch.Tensor:
        """The importance log-weights log p(x, z_s|c) - log q(z_s|x,c) of `log_marginal`,
        (n_samples, B), the standardisation's Jacobian included (any subset of the samples
        gives an IWAE estimate with fewer samples, e.g. to check convergence in S).
        Cells and samples are processed in blocks (`marginal_block_elements`), in eval mode
        (restored afterwards), with the global RNG: seed it (or fork it) for repeatable
        numbers. Subclasses change the model through `log_joint_and_proposal`.
        """
        if n_samples < 1:
            raise ValueError("n_samples must be at least 1")
        was_training = self.training
        self.eval()
        x, c = batch.x, batch.c
        width = max(self.n_features, self.latent.embed_dim, 256)  # widest per-row tensor
        budget = max(1, self.marginal_block_elements // width)
        cells = min(len(x), budget)
        out = []
        try:
            for start in range(0, len(x), cells):
                xb = x[start:start + cells]
                cb = None if c is None else c[start:start + cells]
                per = max(1, budget // len(xb))
                log_w = []
                for s0 in range(0, n_samples, per):
                    log_joint, log_q = self.log_joint_and_proposal(
                        xb, cb, min(per, n_samples - s0))
                    log_w.append(log_joint - log_q)
                out.append(torch.cat(log_w))
        finally:
            self.train(was_training)
        log_w = torch.cat(out, dim=1) if out else x.new_zeros(n_samples, 0)
        if self.likelihood.encoder_transform == "standardize":
            log_w = log_w - torch.log(self.scale).sum()
        return log_w

    def mixture_weight_means(self) -> torch.Tensor | None:
        """Fitted mixture weights the prior plugs in (the c*GMΔVAE's E_q[pi]); None here."""
        return None

    def loglik_kind(self) -> str:
        """What `log_marginal` estimates: ``"marginal"`` (log p(x|c), every latent and prior
        parameter integrated out) or ``"predictive"`` (fitted mixture weights plugged into
        p(y), `mixture_weight_means`: the c*GMΔVAE with global weights)."""
        return "marginal" if self.mixture_weight_means() is None else "predictive"

    @torch.no_grad()
    def posterior_predictive(self, batch: Batch) -> torch.Tensor:
        """One replicate x~ ~ p(x|z,c) per cell with z ~ q(z|x,c) (eval mode, global RNG),
        (B, features), on the scale of the reconstruction target (counts for NB/ZINB)."""
        was_training = self.training
        self.eval()
        try:
            x_in, _, library = self.transform(batch.x)
            z, _ = self.latent.rsample(self.encode(x_in, batch.c))
            return self.decode(z, batch.c, library).sample()
        finally:
            self.train(was_training)
