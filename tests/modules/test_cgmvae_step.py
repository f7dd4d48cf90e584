"""The c*GMΔVAE's training step with less work (the prepared library, the closed-form KL of
q(w), the global weights' terms kept while gamma is held, no tempering term at weight 1):
the loss and every gradient are those of the step as it was written before, bit for bit
(float32, count data, dropout on)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.distributions import kl_divergence

from geovae.data import InMemorySource, Prepared
from geovae.data.batch import Batch
from geovae.modules import components as comp
from geovae.modules.cgmvae import CGMVAEModule
from geovae.modules.mixture_start import set_phase
from geovae.modules.vae import PREPARED_INPUT
from geovae.nn.latents import make_latent
from geovae.nn.likelihoods import summed_log_prob


def reference_forward(self: CGMVAEModule, x: torch.Tensor, c: torch.Tensor | None,
                      labels: torch.Tensor | None, kl_weight: float) -> torch.Tensor:
    """`CGMVAEModule.forward`'s loss as written before the trim (geovae bad17c1)."""
    qz, qw, target = self.posteriors(x, c)
    z, log_qz = self.latent.rsample(qz)
    if log_qz is None:
        log_qz = qz.log_prob(z)
    w = qw.rsample()
    library = x.sum(-1, keepdim=True)
    reconstruction = -summed_log_prob(self.decode(z, c, library), target)
    log_pi = torch.log_softmax(self.logits(z), dim=-1)
    pi = log_pi.exp()
    neg_entropy = (pi * log_pi.masked_fill(~self.active, 0.0)).sum(-1)
    labelled = torch.zeros_like(log_qz, dtype=torch.bool) if labels is None else labels >= 0
    if labels is not None:
        onehot = torch.zeros_like(pi).scatter_(1, labels.clamp(min=0)[:, None], 1.0)
        pi = torch.where(labelled[:, None], onehot, pi)
        neg_entropy = torch.where(labelled, 0.0, neg_entropy)
    if self.mixture_weights == "per_cell":
        e_log_d, kl_d = self.weight_terms(z, pi, kl_weight)
    else:  # no SVI step here (kl_weight < 1 below): the terms computed afresh
        kl_d = (kl_divergence(comp.dirichlet_(self.gamma), comp.dirichlet_(self.alpha))
                / self.n_obs).to(pi.dtype).expand(pi.shape[0])
        e_log_d = self.expected_log_weights().to(pi.dtype).expand_as(pi)
    log_pz = self.prior_z(w, c).log_prob(z.unsqueeze(1))
    kl = ((log_qz - (pi * log_pz).sum(-1))
          + kl_divergence(qw, comp.normal_(torch.zeros_like(w), torch.ones_like(w))).sum(-1)
          + (neg_entropy - (pi * e_log_d).sum(-1)) + kl_d)
    ce = torch.where(labelled, -log_pi.gather(1, labels.clamp(min=0)[:, None]).squeeze(1),
                     torch.zeros_like(kl)) if labels is not None else torch.zeros_like(kl)
    weight = self.classifier_weight / self.labelled_fraction
    tempered = kl - (1 - self.entropy_weight) * neg_entropy
    return (reconstruction + kl_weight * tempered + weight * ce).mean()


def _module(n_labels: int, weights: str) -> tuple[CGMVAEModule, Batch]:
    torch.manual_seed(0)
    m = CGMVAEModule(40, make_latent("euclidean", 3, 32), "nb", 2, n_hidden=32, dropout=0.1,
                     n_clusters=5, n_labels=n_labels, mixture_weights=weights)
    m.set_data_facts(500, 0.5 if n_labels else 1.0)
    rng = np.random.default_rng(1)
    x = sp.csr_matrix(rng.poisson(0.3, (24, 40)).astype(np.float32))  # sparse counts
    labels = np.full(24, -1)
    if n_labels:
        labels[::3] = np.arange(8) % n_labels
    prepared = Prepared(X=x, batch=(np.arange(24) % 2)[:, None], labels=labels)
    source = InMemorySource(prepared, [2], torch.device("cpu"))
    batch = m.prepare(source.take(torch.arange(24)))
    assert getattr(batch.x, PREPARED_INPUT, None) is not None  # the prepared library
    return m.train(), batch


@pytest.mark.parametrize(("n_labels", "weights", "entropy_weight", "no_labels"), [
    (0, "global", 1.0, False), (0, "global", 0.4, False), (0, "global", 1.0, True),
    (3, "global", 1.0, False), (0, "per_cell", 1.0, False)])
def test_the_step_is_the_one_before_bit_for_bit(n_labels: int, weights: str,
                                                entropy_weight: float, no_labels: bool) -> None:
    m, batch = _module(n_labels, weights)
    m.entropy_weight = entropy_weight
    labels = None if no_labels else batch.labels
    results = []
    for fn in (reference_forward, lambda *a: CGMVAEModule.forward(*a).loss):
        for _ in range(2):  # the second step reuses the global weights' terms
            torch.manual_seed(5)
            loss = fn(m, batch.x, batch.c, labels, 0.5)
            grads = torch.autograd.grad(loss, [p for p in m.parameters() if p.requires_grad],
                                        allow_unused=True)
            results.append((loss, grads))
    want = results[0]
    for loss, grads in results[1:]:
        assert torch.equal(loss, want[0])
        for a, b in zip(grads, want[1], strict=True):
            assert (a is None) == (b is None) and (a is None or torch.equal(a, b))


def test_global_weight_terms_follow_gamma() -> None:
    """The kept terms are recomputed after any in-place change of gamma (an SVI step, a load)
    and equal a fresh computation; held, they are the same tensors."""
    m, _ = _module(0, "global")
    first = comp.global_weight_terms(m)
    assert comp.global_weight_terms(m)[0] is first[0]  # kept
    for change in (lambda: m.gamma.mul_(1.5),
                   lambda: m.load_state_dict({**m.state_dict(), "gamma": m.gamma * 0.5}),
                   lambda: m.n_obs.fill_(900.0)):
        change()
        got = comp.global_weight_terms(m)
        want = (m.expected_log_weights(), kl_divergence(
            comp.dirichlet_(m.gamma), comp.dirichlet_(m.alpha)) / m.n_obs)
        assert got[0] is not first[0]
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        first = got


def test_global_weight_terms_of_a_module_built_in_inference_mode() -> None:
    """Tensors made under torch.inference_mode() have no version counter: the terms are
    computed, not kept (review F35: reading ``_version`` raised a RuntimeError)."""
    with torch.inference_mode():
        m, _ = _module(0, "global")
    got = comp.global_weight_terms(m)
    want = (m.expected_log_weights(), kl_divergence(
        comp.dirichlet_(m.gamma), comp.dirichlet_(m.alpha)) / m.n_obs)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert "_global_weight_terms" not in m.__dict__


def test_hold_phase_step_is_unchanged_by_the_kept_terms() -> None:
    """In the hold (prior network frozen, gamma held) the step is the reference's too."""
    m, batch = _module(0, "global")
    set_phase(m, "hold")
    torch.manual_seed(3)
    want = reference_forward(m, batch.x, batch.c, batch.labels, 1.0)
    torch.manual_seed(3)
    assert torch.equal(m(batch.x, batch.c, batch.labels, 1.0).loss, want)


def test_a_gaussian_step_is_the_one_before_with_no_extra_transform() -> None:
    """Review F33: on data that are not counts the step took its library size from a third
    `transform` (a standardisation of the block) that the likelihood does not read; now the
    row sum as before: the reference's loss and gradients, bit for bit, two transforms."""
    torch.manual_seed(0)
    m = CGMVAEModule(13, make_latent("euclidean", 3, 32), "gaussian", 0, n_hidden=32,
                     n_clusters=5, center=torch.randn(13), scale=torch.rand(13) + 0.5).train()
    m.set_data_facts(500, 1.0)
    x = torch.randn(16, 13)
    calls = []
    transform = m.transform
    m.transform = lambda v: (calls.append(1), transform(v))[1]
    results = []
    for fn in (reference_forward, lambda *a: CGMVAEModule.forward(*a).loss):
        torch.manual_seed(5)
        calls.clear()
        loss = fn(m, x, None, None, 0.5)
        results.append((loss, len(calls), torch.autograd.grad(
            loss, [p for p in m.parameters() if p.requires_grad], allow_unused=True)))
    (want, _, want_grads), (got, n_calls, grads) = results
    assert torch.equal(got, want) and n_calls == 2
    for a, b in zip(grads, want_grads, strict=True):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))
