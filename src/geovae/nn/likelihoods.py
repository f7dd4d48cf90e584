"""Observation models p(x|z): negative binomial, zero-inflated NB, Gaussian, Bernoulli.

Each likelihood is a small head that maps the decoder's last hidden layer to a
`torch.distributions.Distribution` whose ``log_prob(x)`` is per cell and feature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Distribution, Normal, constraints

from geovae.nn.nb_sum import _EPS, NonZeros, nb_log_prob_sum

#: attribute a data source may set on a dense count block: the flat positions of its non-zero
#: entries in ascending order (what ``torch.nonzero(x.reshape(-1))`` returns), known from the
#: CSR rows it was made from, so `log_nb_positive` need not scan the block for them
NONZERO_POSITIONS = "_geovae_nonzero_flat"
#: attribute a data source may set on a dense count block: its non-zero entries as a
#: `geovae.nn.nb_sum.NonZeros` (rows, columns, flat positions, values, lgamma(values + 1)),
#: for `summed_log_prob`
NONZERO_ENTRIES = "_geovae_nonzeros"


def attach_nonzeros(block: torch.Tensor, nonzeros: NonZeros) -> torch.Tensor:
    """Mark the dense count ``block`` (made from canonical CSR rows: sorted columns, no
    duplicates, no stored zeros) with its non-zeros: `NONZERO_POSITIONS` (their ``flat``
    positions) and `NONZERO_ENTRIES`. Returns ``block``."""
    setattr(block, NONZERO_POSITIONS, nonzeros.flat)
    setattr(block, NONZERO_ENTRIES, nonzeros)
    return block


def log_nb_positive(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """log NB(x; mean mu, inverse dispersion theta), written with stable log terms:

        theta (log theta - log(theta + mu)) + x (log mu - log(theta + mu))
        + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1).

    Where x = 0 every term after the first is exactly zero. On the CPU, when at most half the
    entries are non-zero (sparse counts), those terms are evaluated at the non-zero entries only
    (log-gamma and, in the backward pass, digamma dominate a dense evaluation), and the values
    are the same as the dense formula's up to float rounding. On other devices the dense formula
    runs (finding the non-zeros would synchronise with the host every step). ``theta`` may be
    per feature, shape (features,): it is broadcast, and lgamma(theta) costs one value per
    feature. Where ``x`` carries `NONZERO_POSITIONS` (set by `geovae.data.sources`), those are
    the non-zero entries and the scan for them (~10 % of a CPU epoch) is skipped.
    """
    log_theta_mu = torch.log(theta + mu + _EPS)
    zero_part = theta * (torch.log(theta + _EPS) - log_theta_mu)  # the value where x = 0
    if x.device.type == "cpu" and x.shape == zero_part.shape:
        flat = getattr(x, NONZERO_POSITIONS, None)
        if flat is None:
            flat = torch.nonzero(x.reshape(-1)).squeeze(1)
        if 2 * flat.numel() <= x.numel():
            shape = x.shape

            def at(t: torch.Tensor) -> torch.Tensor:  # t broadcast to ``shape``, at ``flat``
                if t.shape == shape:
                    return t.reshape(-1).index_select(0, flat)
                if t.dim() == 1 and len(shape) and t.shape[0] == shape[-1]:  # per feature
                    return t.index_select(0, flat % shape[-1])
                return t.expand(shape).reshape(-1).index_select(0, flat)

            xv, tv = at(x), at(theta)
            vals = (at(zero_part) + xv * (torch.log(at(mu) + _EPS) - at(log_theta_mu))
                    + torch.lgamma(xv + tv) - torch.lgamma(tv) - torch.lgamma(xv + 1))
            return zero_part.reshape(-1).scatter(0, flat, vals).view(shape)
    return (
        zero_part
        + x * (torch.log(mu + _EPS) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


def log_zinb_positive(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, zi_logits: torch.Tensor
) -> torch.Tensor:
    """log ZINB: with probability sigmoid(zi_logits) a structural zero, else NB(mu, theta)."""
    softplus_neg = F.softplus(-zi_logits)
    log_nb0 = theta * (torch.log(theta + _EPS) - torch.log(theta + mu + _EPS))
    case_zero = F.softplus(-zi_logits + log_nb0) - softplus_neg
    case_nonzero = -zi_logits - softplus_neg + log_nb_positive(x, mu, theta)
    return torch.where(x < 0.5, case_zero, case_nonzero)


def summed_log_prob(px: Distribution, value: torch.Tensor) -> torch.Tensor:
    """``px.log_prob(value).sum(-1)``: the log-likelihood per cell.

    For a negative binomial without zero inflation, per-feature dispersion and sparse counts
    (at most half the entries non-zero) on the CPU, through `nb_log_prob_sum`: the same value
    up to float rounding, about half the work of the per-entry formula and its autograd.
    The non-zeros come from the block's `NONZERO_ENTRIES` (set by `geovae.data.sources`) or a
    scan of the block. Everywhere else, the per-entry ``log_prob``, summed.
    """
    if (isinstance(px, NegativeBinomial) and px.zi_logits is None
            and value.device.type == "cpu" and value.dim() == 2
            and tuple(px.batch_shape) == tuple(value.shape) and px.theta.dim() == 1
            and px.theta.shape[0] == value.shape[1]):
        nonzeros = getattr(value, NONZERO_ENTRIES, None)
        if nonzeros is None:  # a scan, not a count read back: no host read in the step
            nonzeros = NonZeros.of(value)
        if 2 * nonzeros.flat.numel() <= value.numel():
            factors = px.factors()
            if factors is not None:  # the mean formed inside (one (B, G) buffer fewer)
                logits = factors[0] is None  # and the proportions too (one node fewer)
                return nb_log_prob_sum(px.logits if logits else factors[0], px.theta,
                                       nonzeros, factors[1], logits=logits)
            return nb_log_prob_sum(px.mu, px.theta, nonzeros)
    return px.log_prob(value).sum(-1)


class NegativeBinomial(Distribution):
    """Negative binomial with mean ``mu`` and inverse dispersion ``theta`` (optionally ZI)."""

    arg_constraints = {"mu": constraints.positive, "theta": constraints.positive}
    support = constraints.nonnegative_integer

    def __init__(self, mu: torch.Tensor | None, theta: torch.Tensor,
                 zi_logits: torch.Tensor | None = None, validate_args: bool = False, *,
                 proportions: torch.Tensor | None = None,
                 library: torch.Tensor | None = None, logits: torch.Tensor | None = None):
        """``mu`` the mean; or None with ``proportions`` (cells, features), or their ``logits``
        (softmax over features), and ``library`` (cells, 1): the mean is their product, formed
        on first use of `mu` (the fused NB sum takes the factors instead, `factors`)."""
        if mu is None and ((proportions is None and logits is None) or library is None):
            raise ValueError("NegativeBinomial needs mu, or proportions (or logits) and library")
        self._mu, self.theta, self.zi_logits = mu, theta, zi_logits
        self._proportions, self.logits, self.library = proportions, logits, library
        shape = mu.shape if mu is not None else torch.broadcast_shapes(
            (logits if proportions is None else proportions).shape, library.shape)
        super().__init__(batch_shape=shape, validate_args=validate_args)

    @property
    def proportions(self) -> torch.Tensor | None:
        if self._proportions is None and self.logits is not None:
            self._proportions = torch.softmax(self.logits, dim=-1)
        return self._proportions

    @property
    def mu(self) -> torch.Tensor:
        if self._mu is None:
            self._mu = self.proportions * self.library
        return self._mu

    def factors(self) -> tuple[torch.Tensor | None, torch.Tensor] | None:
        """(proportions, library) while the mean has not been formed, else None; the
        proportions are None while they have not been formed from the logits either."""
        return None if self._mu is not None else (self._proportions, self.library)

    @property
    def mean(self) -> torch.Tensor:
        if self.zi_logits is None:
            return self.mu
        return self.mu * torch.sigmoid(-self.zi_logits)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self.zi_logits is None:
            return log_nb_positive(value, self.mu, self.theta)
        return log_zinb_positive(value, self.mu, self.theta, self.zi_logits)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            shape = self._extended_shape(sample_shape)
            rate = torch.distributions.Gamma(self.theta, self.theta / self.mu).sample(
                sample_shape)
            counts = torch.poisson(rate.expand(shape))
            if self.zi_logits is not None:
                zero = torch.rand(shape, device=counts.device) < torch.sigmoid(self.zi_logits)
                counts = torch.where(zero, torch.zeros_like(counts), counts)
            return counts


class Likelihood(nn.Module):
    """Base head: ``forward(h, library) -> Distribution`` over the (transformed) data."""

    #: what the encoder sees and what is reconstructed ("log1p" of counts or the data itself)
    encoder_transform = "identity"

    def __init__(self, n_hidden: int, n_features: int):
        super().__init__()
        self.n_features = n_features


class NBLikelihood(Likelihood):
    """NB/ZINB with mean = softmax proportions x observed library size, per-gene dispersion."""

    encoder_transform = "log1p"

    def __init__(self, n_hidden: int, n_features: int, zero_inflated: bool = False):
        super().__init__(n_hidden, n_features)
        self.scale = nn.Linear(n_hidden, n_features)
        self.log_theta = nn.Parameter(torch.zeros(n_features))
        self.dropout = nn.Linear(n_hidden, n_features) if zero_inflated else None

    def forward(self, h: torch.Tensor, library: torch.Tensor) -> NegativeBinomial:
        theta = torch.exp(self.log_theta.clamp(-12.0, 12.0))  # per feature, broadcast
        zi = self.dropout(h) if self.dropout is not None else None
        # the proportions are softmax(logits), formed where first used
        return NegativeBinomial(None, theta, zi, logits=self.scale(h), library=library)


class GaussianLikelihood(Likelihood):
    """Gaussian on standardised features with a learned per-feature scale."""

    encoder_transform = "standardize"

    def __init__(self, n_hidden: int, n_features: int):
        super().__init__(n_hidden, n_features)
        self.loc = nn.Linear(n_hidden, n_features)
        self.log_scale = nn.Parameter(torch.zeros(n_features))

    def forward(self, h: torch.Tensor, library: torch.Tensor) -> Normal:
        loc = self.loc(h)
        scale = F.softplus(self.log_scale).clamp_min(1e-3).expand_as(loc)
        return Normal(loc, scale)


class BernoulliLikelihood(Likelihood):
    """Bernoulli on values in [0, 1] (binary data, or intensities as in binarised MNIST)."""

    def __init__(self, n_hidden: int, n_features: int):
        super().__init__(n_hidden, n_features)
        self.logits = nn.Linear(n_hidden, n_features)

    def forward(self, h: torch.Tensor, library: torch.Tensor) -> Distribution:
        return _ContinuousBernoulliFree(logits=self.logits(h))


class _ContinuousBernoulliFree(Bernoulli):
    """Bernoulli whose log_prob also accepts fractional targets (cross-entropy)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(self.logits, value, reduction="none")


#: likelihood name -> (head class, keyword arguments)
LIKELIHOODS: dict[str, tuple[type[Likelihood], dict]] = {
    "nb": (NBLikelihood, {}),
    "zinb": (NBLikelihood, {"zero_inflated": True}),
    "gaussian": (GaussianLikelihood, {}),
    "bernoulli": (BernoulliLikelihood, {}),
}
#: likelihoods of non-negative integer counts
COUNT_LIKELIHOODS = ("nb", "zinb")


def make_likelihood(name: str, n_hidden: int, n_features: int) -> Likelihood:
    """Build the likelihood head called ``name`` (see `LIKELIHOODS`)."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of " + ", ".join(LIKELIHOODS))
    cls, kwargs = LIKELIHOODS[name]
    return cls(n_hidden, n_features, **kwargs)
