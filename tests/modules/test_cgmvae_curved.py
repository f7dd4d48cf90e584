"""c*GMΔVAE with curved latents: mixture components p(z|w,y,c) on S^d and H^d; each ELBO
term against brute-force Monte Carlo for every geometry (Euclidean included)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import adjusted_rand_score

import geovae
import geovae.modules.cgmvae as cgmvae_module
from geovae.datasets.blobs import make_blobs
from geovae.distributions import PowerSpherical, VonMisesFisher, WrappedNormal
from geovae.modules.cgmvae import TERMS, CGMVAEModule
from geovae.nn.latents import Latent, make_latent

CURVED = [("sphere", {"posterior": "vmf"}), ("sphere", {"posterior": "power-spherical"}),
          ("hyperbolic", {})]
IDS = ["vmf", "power-spherical", "hyperbolic"]

#: mixture-weight models (global q(pi), per-cell q(d|z)); None where the module has one only
WEIGHTS = getattr(cgmvae_module, "MIXTURE_WEIGHTS", (None,))


def _tiny(geometry: str, options: dict, seed: int = 0, **extra: object) -> CGMVAEModule:
    torch.manual_seed(seed)
    latent = make_latent(geometry, 2, 16, **options)
    m = CGMVAEModule(6, latent, "gaussian", 2, n_hidden=16, dropout=0.0, n_clusters=3,
                     w_dim=2, dirichlet_alpha=0.7, **extra)
    return m.double().eval()


def _inv_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def _reference_log_density(geometry: str, posterior: str, loc: np.ndarray, param: np.ndarray,
                           z: np.ndarray) -> np.ndarray:
    """Component log-densities written out independently of geovae: vMF on S^2 from scipy;
    Power Spherical on S^2, C(kappa) = (kappa + 1) / (2^(kappa + 2) pi) (from the integral
    2 pi int_{-1}^{1} (1 + t)^kappa dt); the wrapped normal on H^2 from the geodesic distance
    r = acosh(-<loc, z>_L) for an isotropic scale (any loc), or from v = log_0(z) at the
    origin (any scales): log N(v; 0, diag scale^2) - log(sinh r / r)."""
    if geometry == "sphere" and posterior == "vmf":
        return stats.vonmises_fisher(loc, param).logpdf(z)
    if geometry == "sphere":
        k = param
        return np.log(k + 1) - (k + 2) * np.log(2) - np.log(np.pi) + k * np.log1p(z @ loc)
    r = np.arccosh(np.maximum(z[:, 0] * loc[0] - z[:, 1:] @ loc[1:], 1.0))
    if np.allclose(param, param[0]):
        gauss = -r ** 2 / (2 * param[0] ** 2) - 2 * np.log(param[0]) - np.log(2 * np.pi)
    else:
        assert np.allclose(loc, [1, 0, 0])  # anisotropic: only at the origin (v = log_0 z)
        v = r[:, None] * z[:, 1:] / np.linalg.norm(z[:, 1:], axis=1, keepdims=True)
        gauss = stats.norm(0, param).logpdf(v).sum(1)
    return gauss - np.log(np.sinh(r) / r)


#: component outputs with known parameters: sphere (direction (3), raw kappa), hyperbolic
#: (tangent vector at the origin (2), raw scale (2))
SPHERE_OUT = [([3.0, 0.0, 4.0], 3.0), ([0.0, -2.0, 0.0], 1.5), ([1.0, 1.0, 1.0], 40.0)]
HYPER_OUT = [([0.6, -0.8], [0.5, 0.5]), ([0.0, 0.0], [0.3, 0.9]), ([-1.5, 2.0], [1.2, 1.2])]


@pytest.mark.parametrize(("geometry", "options"), CURVED, ids=IDS)
@torch.no_grad()
def test_components_have_the_stated_parameters_and_densities(geometry: str,
                                                            options: dict) -> None:
    """`component_prior` from unconstrained outputs with known values: mean directions
    out / |out| with kappa = softplus + 1 (capped at max_kappa), or wrapped normals at
    exp_0(a) = (cosh|a|, sinh|a| a / |a|) with scale softplus + 1e-3; log-densities against
    the written-out references above. Then `prior_z`: component k is `component_prior` of
    the k-th block of prior_net's output (a wrong reshape mixes components)."""
    m = _tiny(geometry, options)
    posterior = options.get("posterior", "")
    want = {"vmf": VonMisesFisher, "power-spherical": PowerSpherical}.get(posterior,
                                                                          WrappedNormal)
    if geometry == "sphere":
        out = torch.tensor([[*d, _inv_softplus(k - 1)] for d, k in SPHERE_OUT]
                           + [[0.0, 0.0, 1.0, 1e5]], dtype=torch.float64)  # kappa capped
        locs = [np.array(d) / np.linalg.norm(d) for d, _ in SPHERE_OUT] + [np.array([0, 0, 1.0])]
        params = [k for _, k in SPHERE_OUT] + [m.latent.max_kappa]
    else:
        out = torch.tensor([[*a, *(_inv_softplus(s - 1e-3) for s in sc)] for a, sc in HYPER_OUT],
                           dtype=torch.float64)
        locs, params = [], []
        for a, sc in HYPER_OUT:
            a, n = np.array(a), np.linalg.norm(a)
            locs.append(np.array([np.cosh(n), *(np.sinh(n) / n * a if n else a)]))
            params.append(np.array(sc))
    pz = cgmvae_module.component_prior(m.latent, out)
    assert isinstance(pz, want) and pz.batch_shape == (len(out),)
    np.testing.assert_allclose(pz.loc.numpy(), np.stack(locs), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pz.scale.numpy(), np.stack(params), rtol=1e-9)
    torch.manual_seed(0)  # points spread over the manifold, and points near each location
    far = m.latent.manifold.expmap0(m.latent.manifold.tangent0(
        torch.randn(200, 2, dtype=torch.float64)))
    for k, (loc, param) in enumerate(zip(locs, params, strict=True)):
        if geometry == "sphere" and param > 1e3:
            continue  # the capped component: its parameters were checked above
        near = pz.sample((200,))[:, k]
        z = torch.cat([far, near])
        ref = _reference_log_density(geometry, posterior, loc, param, z.numpy())
        got = pz.log_prob(z.unsqueeze(1))[:, k].numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)

    w = torch.randn(4, 2, dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)[[0, 1, 0, 1]]
    prior = m.prior_z(w, c)
    assert isinstance(prior, want) and prior.batch_shape == (4, 3)
    raw = m.prior_net(torch.cat([w, c], -1) if m.condition_prior else w)
    blocks = raw.view(4, 3, m.n_component_params)
    for k in range(3):
        comp = cgmvae_module.component_prior(m.latent, blocks[:, k])
        np.testing.assert_allclose(prior.loc[:, k].numpy(), comp.loc.numpy(), rtol=1e-12)
        np.testing.assert_allclose(prior.scale[:, k].numpy(), comp.scale.numpy(), rtol=1e-12)
    ok, why = m.latent.manifold.check_point(prior.loc, atol=1e-9)
    assert ok, why
    assert m.classifier[0][0].in_features == m.latent.embed_dim == 3


def _brute_force(m: CGMVAEModule, x: torch.Tensor, c: torch.Tensor, label: int,
                 n: int) -> dict[str, torch.Tensor]:
    """Per-sample log-ratios of each term with z, w, y and d all sampled (no closed forms)."""
    from torch.distributions import Categorical, Dirichlet, Normal

    qz, qw, target = m.posteriors(x, c)
    z, w = qz.sample((n,)).squeeze(1), qw.sample((n,)).squeeze(1)
    cc = c.expand(n, -1)
    qy = Categorical(logits=m.classifier(z))
    y = qy.sample() if label < 0 else torch.full((n,), label)
    qd = Dirichlet(m.concentrations(z))
    d = qd.sample()
    log_qy = qy.log_prob(y) if label < 0 else torch.zeros(n, dtype=z.dtype)
    # p(z|w,y) of the sampled component only, from the component family itself
    log_pz = m.prior_z(w, cc).log_prob(z.unsqueeze(1))[torch.arange(n), y]
    return {
        "reconstruction": -m.decode(z, cc, x.sum(-1, keepdim=True).expand(n, 1))
        .log_prob(target.expand(n, -1)).sum(-1),
        "kl_z": qz.log_prob(z) - log_pz,
        "kl_w": qw.log_prob(w).sum(-1) - Normal(0.0, 1.0).log_prob(w).sum(-1),
        "kl_y": log_qy - torch.log(d[torch.arange(n), y]),
        "kl_d": qd.log_prob(d) - Dirichlet(m.alpha.expand(n, -1)).log_prob(d),
    }


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("label", [-1, 2])
@pytest.mark.parametrize(("geometry", "options"), [("euclidean", {}), *CURVED],
                         ids=["euclidean", *IDS])
@torch.no_grad()
def test_elbo_terms_match_brute_force_monte_carlo(geometry: str, options: dict,
                                                  label: int, weights: str | None) -> None:
    m = _tiny(geometry, options, **({} if weights is None else {"mixture_weights": weights}))
    torch.manual_seed(1)
    x = torch.randn(1, 6, dtype=torch.float64)
    c = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    n = 50_000
    closed = m(x.expand(n, -1), c.expand(n, -1), torch.full((n,), label)).terms
    brute = _brute_force(m, x, c, label, n)
    for t in TERMS:
        a, b = closed[t], brute[t]
        # independent means of n iid draws: diff ~ N(0, se^2) by the CLT; 5 se ~ p < 1e-6
        se = float(torch.sqrt(a.var() / n + b.var() / n))
        diff = float(a.mean() - b.mean())
        print(f"{geometry} {t}: closed {float(a.mean()):.5f} brute {float(b.mean()):.5f} "
              f"se {se:.1e}")
        assert abs(diff) < 5 * se + 1e-9, (t, diff, se)
    # the exact sum over y removes variance: kl_z per draw varies less than with y sampled
    if label < 0:
        assert float(closed["kl_z"].var()) < float(brute["kl_z"].var())


def _directional_derivatives(m: CGMVAEModule, x: torch.Tensor, c: torch.Tensor,
                             labels: torch.Tensor, h: float = 1e-7
                             ) -> dict[tuple[str, str], tuple[float, float]]:
    """(autograd, central difference) of each term's batch mean along a random direction in
    each top-level parameter group (encoder, latent head, decoder, classifier, ...).

    Every evaluation draws z and w with the same seed (common random numbers), so the batch
    mean is a deterministic, piecewise smooth function of the parameters and its derivative
    is what autograd must return; h is small enough that few cells cross a ReLU kink."""
    params = dict(m.named_parameters())

    def terms(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        torch.manual_seed(7)
        out = torch.func.functional_call(m, p, (x, c, labels)).terms
        return {t: out[t].mean() for t in TERMS}

    grads = {}
    for t, v in terms(params).items():  # one backward per term
        g = (torch.autograd.grad(v, list(params.values()), allow_unused=True,
                                 retain_graph=True)
             if v.requires_grad else [None] * len(params))
        grads[t] = dict(zip(params, g, strict=True))
    out = {}
    gen = torch.Generator().manual_seed(3)
    for group in sorted({k.split(".")[0] for k in params}):
        u = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) if k.split(".")[0] == group
             else torch.zeros_like(v) for k, v in params.items()}
        with torch.no_grad():
            up = terms({k: v + h * u[k] for k, v in params.items()})
            down = terms({k: v - h * u[k] for k, v in params.items()})
        for t in TERMS:
            auto = sum(float((g * u[k]).sum()) for k, g in grads[t].items() if g is not None)
            out[group, t] = (auto, float(up[t] - down[t]) / (2 * h))
    return out


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("label", [-1, 2])
@pytest.mark.parametrize(("geometry", "options"), [("euclidean", {}), *CURVED],
                         ids=["euclidean", *IDS])
def test_elbo_term_gradients_match_finite_differences(geometry: str, options: dict,
                                                      label: int, weights: str | None) -> None:
    """The value test above runs under no_grad: a term computed from detached pieces (pi,
    E[log d], log p(z|w,y), the Dirichlet KL, ...) would pass it. Here each term's gradient
    must equal the finite difference of the same term, per parameter group, and be non-zero
    where the term depends on the group by construction.

    Power Spherical's z goes through torch's Beta sampler, whose reparameterised gradient is
    the implicit one (right in expectation, not the pathwise derivative of a fixed draw):
    the groups that move z (encoder, latent head) are left out for it."""
    extra = {} if weights is None else {"mixture_weights": weights}
    m = _tiny(geometry, options, **extra)
    n = 256
    torch.manual_seed(1)
    x = torch.randn(1, 6, dtype=torch.float64).expand(n, -1)
    c = torch.tensor([[0.0, 1.0]], dtype=torch.float64).expand(n, -1)
    dd = _directional_derivatives(m, x, c, torch.full((n,), label))
    moves_z = {"encoder", "latent"} if options.get("posterior") == "power-spherical" else set()
    for (group, t), (auto, fd) in dd.items():
        if group in moves_z:
            continue
        assert abs(auto - fd) <= 1e-2 * abs(fd) + 1e-7, (group, t, auto, fd)
    per_cell = hasattr(m, "dirichlet")
    must = [("decoder", "reconstruction"), ("latent", "reconstruction"), ("w_head", "kl_w"),
            ("prior_net", "kl_z"), ("w_head", "kl_z"), ("latent", "kl_z")]
    if label < 0:  # q(y|z) enters the sums
        must += [("classifier", "kl_z"), ("classifier", "kl_y")]
    if per_cell:  # q(d|z) = Dir(g(z)): E[log d] and the Dirichlet KL depend on g
        must += [("dirichlet", "kl_y"), ("dirichlet", "kl_d"), ("latent", "kl_d")]
    for group, t in must:
        assert abs(dd[group, t][0]) > 1e-4, (group, t, dd[group, t])


# ---------------------------------------------------------------------- blobs
#: ARI floor on the blobs (2000 cells, 40 epochs, condition given). Measured on seeds 0 and 1:
#: sphere (vMF) 1.000 / 1.000, hyperbolic 1.000 / 1.000 (Euclidean: >= 0.9 asserted).
ARI_FLOOR = 0.9


@pytest.mark.parametrize("geometry", ["sphere", "hyperbolic"])
def test_blobs_on_manifold(geometry: str, tmp_path: Path) -> None:
    adata = make_blobs(n_cells=2000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", latent=geometry, latent_dim=4,
                           likelihood="gaussian", batch_key="condition",
                           model_options={"n_clusters": 5}, epochs=40, progress=False, seed=0)
    probs = adata.obsm["geovae_cluster_probs"]
    ari = adjusted_rand_score(adata.obs["blob"], probs.argmax(1))
    print(f"{geometry}: mixture ARI vs blob {ari:.3f}")
    assert ari >= ARI_FLOOR
    assert model.history is not None and np.isfinite(model.history.train).all()
    info = adata.uns["geovae"]
    assert all(np.isfinite(v) for v in info["elbo_terms"].values())
    X = adata.obsm["X_geovae"]
    assert X.shape == (2000, 5) and np.isfinite(X).all()
    ok, why = model.module.latent.manifold.check_point(torch.as_tensor(X, dtype=torch.float64),
                                                       atol=1e-4)
    assert ok, why
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)
    # save / load reproduces the cluster probabilities
    model.save(tmp_path / "m")
    again = adata.copy()
    geovae.embed(again, geovae.GeoVAE.load(tmp_path / "m"))
    np.testing.assert_allclose(again.obsm["geovae_cluster_probs"], probs, atol=1e-5)
    np.testing.assert_allclose(again.obsm["X_geovae"], X, atol=1e-5)


def test_unknown_latent_rejected() -> None:
    class Odd(Latent):
        geometry = "odd"

    with pytest.raises(geovae.OptionError, match="no mixture prior"):
        CGMVAEModule(6, Odd(2, 16), "gaussian")


def test_euclidean_flow_supported() -> None:
    """RealNVP flows change only q(z|x): log q(z) comes from the latent, the mixture is as
    before."""
    m = CGMVAEModule(6, make_latent("euclidean", 2, 16, flow=2), "gaussian", n_hidden=16,
                     n_clusters=3)
    out = m(torch.randn(8, 6))
    assert torch.isfinite(out.loss) and set(TERMS) <= set(out.terms)
