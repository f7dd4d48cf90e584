"""Merge moves for the c*GMΔVAE's global mixture (issue 24), beside the delete moves.

A delete move (`geovae.modules.deletion`) removes a component from q(y|z) and keeps the others
as they are; when one type is split over two components, each confidently chosen by many
cells, it is not even proposed (the bound alone does not protect real types from being
folded into a neighbour), and if it were, the receiving component is too narrow for the cells
it gets. A merge move removes component j from q(y|z) (its cells go where the classifier
ranks them next, mostly to its twin i) AND refits component i to the cells it then has:

    mu_i(w) <- a mu_i(w) + (1 - a) mu_j(w),   a = N_i / (N_i + N_j)   (linear in the prior
               network's last layer: exact),
    sigma_i <- the weighted sd of z around mu_i(w) under i's new responsibilities (constant
               in w),

N the components' q(y) mass; under the overlap rules below N_j is the part of j's mass that
i receives (where j's cells go to a third component, i's mean stays with its own cells).

Which merges are made is the ``merge_rule`` (`MERGE_RULES`):

* ``"elbo"`` (default): a merge is accepted only when the -ELBO's q(y)- and
  component-dependent part (`negative_bound`) falls, computed on a subsample of training
  cells with the same draws of z and w on both sides. Every proposal is exactly what the
  model then computes (no distillation), so an accepted merge lowers the -ELBO on those
  draws. A type that is not Gaussian (count data: a side lobe of its shallower cells) is
  fitted better by two Gaussians than by one, so this rule keeps both.
* ``"modes"``: components are merged when together they make ONE mode of the mixture density
  (Hennig 2010, "Methods for merging Gaussian mixture components", ADAC 4: the ridgeline
  ratio of Ray & Lindsay 2005's ridgeline; a cluster is a mode, not a Gaussian): along the
  ridgeline between the two components' moment-matched Gaussians, the density pi_i p_i(z) +
  pi_j p_j(z) (each p_k(z) the component averaged over the subsample's draws of w) must not
  dip below `RIDGE_RATIO` x the lower of its peaks on either side (`ridge_ratio`). Where the
  latent does not yet separate weak types into modes (small count simulations at 40 epochs)
  it merges real types too.
* ``"demp"``: components are merged when the classifier confuses them: the directly
  estimated misclassification probability (Hennig 2010's DEMP) of the pair, max over the two
  directions of sum_cells q_i 1[argmax q = j] / sum_cells q_i, exceeds `DEMP_CUTOFF`. It
  finds the count where types are well separated and split into lobes (the issue-type
  simulation); where types are weak (the hard simulation) real types overlap as much and it
  merged them (K = 5 collapsed onto 2 components in 2 of 5 seeds): not the default.
* ``"lobes"``: ``"demp"``, less the pairs whose cells' depth-normalised expression differs
  (`expression_differs`): a type's core and its lobe of shallow cells share one profile
  (the NB decoder takes the library size as an offset); two weak types overlap as much in
  z but differ in their marker genes at equal depth (by an effect size, not a t that grows
  with the cells' count).
* ``"graph"``: components the latent's kNN graph cannot tell apart, by the Leiden clusters'
  PAGA gap rule (`geovae.modules.graph_merge`): a lobe's cells and its core's are each
  other's neighbours, two types' are not, Gaussian or not.

The overlap rules merge greedily, the pair with the highest statistic first, then
recompute it on the merged mixture, while one pair passes; both look only at components with
at least `MERGE_SHARE` of the cells' mass (smaller ones are the delete moves' business), and
the smaller of a pair is folded into the larger. Euclidean latents only (the refit is a
Gaussian's moments) and unsupervised mixtures only (labelled cells keep their label's
component); turning the delete moves off (``delete_moves=False``) turns these off too. The
pair statistics (ridge ratio, DEMP, the veto's effect size and t) are in
`geovae.modules.merge_statistics`.
"""

from __future__ import annotations

import torch
from torch.distributions import Normal

from geovae._rng import seeded
from geovae.data.sources import DataSource
from geovae.errors import OptionError
from geovae.modules.deletion import mixture_probs, negative_bound, seeded_subsample
from geovae.modules.graph_merge import graph_merges
from geovae.modules.merge_fold import fold, merged_component  # noqa: F401 - re-exported
from geovae.modules.merge_statistics import (  # noqa: F401 - the statistics re-exported
    RIDGE_POINTS,
    component_density,
    depth_normalised,
    dip_ratio,
    feature_effect,
    feature_t,
    misclassification,
    ridge_ratio,
    ridgeline,
)
from geovae.modules.mixture_start import inverse_softplus

#: ``merge_rule`` values (module docstring)
MERGE_RULES = ("elbo", "modes", "demp", "lobes", "graph")
#: the rules `greedy_overlap_merges` makes (``"elbo"`` is `greedy_merges`, ``"graph"``
#: `geovae.modules.graph_merge.graph_merges`)
OVERLAP_RULES = ("modes", "demp", "lobes")
#: "modes": merge where the density's lowest point on the ridgeline is at least this share of
#: the lower of its two peaks (Hennig 2010's ridge.ratio method; 0.2 recalled as fpc's
#: mergenormals default, not checked; the development runs below found no better one:
#: 0.5-0.99 also merged real types)
RIDGE_RATIO = 0.2
#: "demp": merge where a pair's misclassification probability exceeds this. Chosen on the
#: development sets of issue 24 (`bench_clusters.py --posthoc-rules`, grid `CUTOFFS`: the
#: issue-type simulation issue2k, K = 15 / 20, and the slow test's small counts, 40 epochs,
#: 4 seeds; RESULTS.md, "Delete moves: `--n-clusters` as an upper bound"): a type's core and
#: its lobe of shallow cells score 0.12-0.24, pairs of two types at most 0.05 there; 0.025
#: (recalled as fpc's mergenormals default for DEMP, not checked) merged real types of the
#: small counts in 2 of 4 seeds; on the hard simulation no cutoff of the grid kept weak real
#: types apart in every seed
DEMP_CUTOFF = 0.1
#: "lobes": a feature differs between two components where its standardised mean difference
#: (`feature_effect`: it does not grow with the cells' count, review F22) is at least
#: LOBE_EFFECT and its |Welch t| exceeds LOBE_T (a noise guard, no more: a 1-sd difference
#: between 50 and 50 cells has |t| about 5), and a pair with at least LOBE_FEATURES such
#: features is two types. All three chosen on the development fits only (issue2k K = 15 and
#: 20 seed 0, hard K = 5 seed 1, hard K = 15 seed 2, default epochs;
#: benchmarks/results/clusters_lobes_effect_dev_2026-12-07.jsonl): the second-largest effect
#: of a type's core and lobe was at most 0.64, of two types (each component >= 65 % one
#: type) at least 1.0, pairs with a mixed component (<= 45 %) 0.50-1.04; LOBE_T 3 kept two
#: small lobes (31-50 cells) apart, 5 made the same merges as 4
LOBE_EFFECT = 0.7
LOBE_T = 4.0
LOBE_FEATURES = 2
#: the overlap rules look at components with at least this share of the cells' q(y) mass
#: (`geovae.models.cgmvae.USED_SHARE`)
MERGE_SHARE = 0.005


def check_merge_rule(rule: str) -> str:
    """``rule`` if it is one of `MERGE_RULES`; else a one-line `OptionError`."""
    if rule not in MERGE_RULES:
        raise OptionError(f"{{opt}} must be one of {', '.join(MERGE_RULES)}, not {rule!r}",
                          param="merge_rule")
    return rule


def greedy_merges(z: torch.Tensor, logits: torch.Tensor, loc: torch.Tensor,
                  log_pz: torch.Tensor, alpha: torch.Tensor, active: torch.Tensor,
                  scale: float, n_protected: int = 0
                  ) -> tuple[torch.Tensor, list[tuple[int, int, float, torch.Tensor]]]:
    """The ``"elbo"`` rule: merge components one pair at a time, each time the (i takes j)
    that lowers the bound most, while one does. ``z`` (n, d) draws, ``logits`` of q(y|z)
    (n, K), the components' means at each cell's w ``loc`` (n, K, d) and log-densities
    ``log_pz`` (n, K), float64. For each j the partner i is the component that receives most
    of j's cells. Returns (the new ``active``, accepted merges as (i, j, a, sd))."""
    active, log_pz, loc = active.clone(), log_pz.clone(), loc.clone()
    merges: list[tuple[int, int, float, torch.Tensor]] = []
    if torch.isnan(logits).any() or torch.isnan(log_pz).any():
        return active, merges
    log_pz = log_pz.clamp(min=-1e30)
    while int(active.sum()) > 1:
        q = mixture_probs(logits, active, None)
        base = negative_bound(q, log_pz, alpha, scale)
        counts = q.sum(0)
        best, choice = 0.0, None
        for j in range(n_protected, len(active)):
            if not active[j]:
                continue
            trial = active.clone()
            trial[j] = False
            q2 = mixture_probs(logits, trial, None)
            i = int(((q2 - q) * q[:, j:j + 1]).sum(0).argmax())  # where j's cells go
            a, mu, sd = merged_component(z, loc, q2[:, i], i, j, counts)
            lp = log_pz.clone()
            lp[:, i] = Normal(mu, sd).log_prob(z).sum(-1)
            gain = float(negative_bound(q2, lp, alpha, scale) - base)
            if gain < best:
                best, choice = gain, (i, j, a, mu, sd, lp)
        if choice is None:
            break
        i, j, a, mu, sd, log_pz = choice
        loc[:, i] = mu
        active[j] = False
        merges.append((i, j, a, sd))
    return active, merges


def pair_statistics(logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                    active: torch.Tensor, n_protected: int = 0,
                    rules: tuple[str, ...] = ("modes", "demp")
                    ) -> list[tuple[int, int, float | None, float | None]]:
    """(i, j, ridge ratio, DEMP) for every pair of active components with at least
    `MERGE_SHARE` of the mass, i the larger; logits (n, K), loc and scale (n, K, d). Only the
    statistics of the merge ``rules`` named are computed (``"modes"``: the ridge ratio,
    ``"demp"``: DEMP); the other is None."""
    return _pairs(mixture_probs(logits, active, None), loc, scale, active, n_protected, rules)


def _pairs(q: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, active: torch.Tensor,
           n_protected: int, rules: tuple[str, ...]
           ) -> list[tuple[int, int, float | None, float | None]]:
    """`pair_statistics` given q(y|z) over the ``active`` components (n, K)."""
    counts = q.sum(0)
    big = [k for k in range(n_protected, len(active))
           if active[k] and counts[k] >= MERGE_SHARE * len(q)]
    demp = misclassification(q) if "demp" in rules else None
    out: list[tuple[int, int, float | None, float | None]] = []
    for a, ka in enumerate(big):
        for kb in big[a + 1:]:
            i, j = (ka, kb) if counts[ka] >= counts[kb] else (kb, ka)
            out.append((i, j,
                        ridge_ratio(loc, scale, counts, i, j) if "modes" in rules else None,
                        None if demp is None else float(torch.maximum(demp[i, j], demp[j, i]))))
    return out


def greedy_overlap_merges(z: torch.Tensor, logits: torch.Tensor, loc: torch.Tensor,
                          scale: torch.Tensor, active: torch.Tensor, rule: str = "modes",
                          n_protected: int = 0, cutoff: float | None = None,
                          profiles: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, list[tuple[int, int, float, torch.Tensor]]]:
    """The ``"modes"`` / ``"demp"`` rules (module docstring): merge the pair with the highest
    ridge ratio / DEMP above ``cutoff`` (default `RIDGE_RATIO` / `DEMP_CUTOFF`), refit the
    survivor (`merged_component`), recompute, until no pair passes. ``"lobes"``: DEMP,
    less the pairs whose cells' depth-normalised expression ``profiles`` (n, G) differ
    (`expression_differs`). Only the rule's own statistic is computed; q(y|z) once a round
    (it depends on the active set alone). Inputs as `greedy_merges` plus the components'
    sds at each cell's w ``scale`` (n, K, d). Returns (the new ``active``, merges as (i, j,
    a, sd)). A ``rule`` not in `OVERLAP_RULES`, or ``"lobes"`` without ``profiles``, is a
    `ValueError`."""
    if rule not in OVERLAP_RULES:
        raise ValueError(f"rule must be one of {', '.join(OVERLAP_RULES)} (elbo: greedy_merges), "
                         f"not {rule!r}")
    if rule == "lobes" and profiles is None:
        raise ValueError("rule 'lobes' needs profiles, the cells' depth-normalised expression "
                         "(n, G): mixture_draws(..., profiles=True)['profiles']")
    cutoff = (RIDGE_RATIO if rule == "modes" else DEMP_CUTOFF) if cutoff is None else cutoff
    column = 2 if rule == "modes" else 3
    active, loc, scale = active.clone(), loc.clone(), scale.clone()
    merges: list[tuple[int, int, float, torch.Tensor]] = []
    if torch.isnan(logits).any() or torch.isnan(loc).any() or torch.isnan(scale).any():
        return active, merges
    q = mixture_probs(logits, active, None)
    while int(active.sum()) > 1:
        stats = _pairs(q, loc, scale, active, n_protected, ("modes",) if column == 2
                       else ("demp",))
        passing = [s for s in stats if s[column] > cutoff]
        if rule == "lobes" and passing:  # the pairs are few: the veto only where DEMP passes
            hard = q.argmax(1).to(profiles.device)  # profiles: CPU, q: the module's device
            passing = [s for s in passing if not expression_differs(profiles, hard, *s[:2])]
        if not passing:
            break
        i, j = max(passing, key=lambda s: s[column])[:2]
        q = fold(z, logits, loc, scale, active, q, i, j, merges)
    return active, merges


def expression_differs(y: torch.Tensor, hard: torch.Tensor, i: int, j: int) -> bool:
    """Whether components i and j are two types by their cells' depth-normalised expression
    (the ``"lobes"`` rule's veto): at least `LOBE_FEATURES` features whose standardised mean
    difference is at least `LOBE_EFFECT` with |Welch t| > `LOBE_T` (`feature_effect`). A
    type's deep core and its lobe of shallow cells decode to one profile (the NB decoder
    takes the library size as an offset), so their cells' x / library agree feature by
    feature; two weak types differ in their marker genes at equal depth. The decision does
    not change when the cells are replicated, once |t| passes its guard."""
    effect, t = feature_effect(y, hard, i, j)
    hits = (effect.abs() >= LOBE_EFFECT) & (t.abs() > LOBE_T)
    return int(hits.sum()) >= LOBE_FEATURES


def apply_merge(module: torch.nn.Module, i: int, j: int, a: float, sd: torch.Tensor) -> None:
    """Component i of the prior network's last layer becomes the merge of i and j: the mean
    rows a i + (1 - a) j, the scale rows constant at ``sd``."""
    last = module.prior_net[-1]
    p, d = module.n_component_params, len(sd)
    rows_i, rows_j = slice(i * p, i * p + d), slice(j * p, j * p + d)
    last.weight[rows_i] = a * last.weight[rows_i] + (1 - a) * last.weight[rows_j]
    last.bias[rows_i] = a * last.bias[rows_i] + (1 - a) * last.bias[rows_j]
    scale_rows = slice(i * p + d, (i + 1) * p)
    last.weight[scale_rows] = 0.0
    last.bias[scale_rows] = inverse_softplus((sd - 1e-3).clamp(min=1e-6)).to(last.bias)


def mergeable(module: torch.nn.Module) -> bool:
    """Whether merge moves apply to ``module``: global weights that update, a Euclidean
    latent, no labels, merge and delete moves on."""
    from geovae.nn.latents import EuclideanLatent

    return (module.mixture_weights == "global" and module.update_weights
            and not module.n_labels and module.merge_moves and module.delete_moves
            and isinstance(module.latent, EuclideanLatent))


@torch.no_grad()
def mixture_draws(module: torch.nn.Module, source: DataSource, idx: torch.Tensor, seed: int,
                  max_cells: int, profiles: bool = False, means: bool = False
                  ) -> dict[str, torch.Tensor]:
    """One seeded draw of z and w for at most ``max_cells`` of the cells ``idx`` (eval mode,
    the global RNG untouched), float64: ``z`` (n, d), ``logits`` of q(y|z) (n, K), the
    components' ``loc`` and ``scale`` at each cell's w (n, K, d), ``log_pz`` (n, K),
    ``n_sub`` (the subsample's size); with ``profiles`` also `depth_normalised` ``profiles``;
    with ``means`` also the posterior ``means`` of z and ``mean_logits`` there, on the CPU
    (as `geovae.modules.graph_merge.posterior_means`, from this pass) and, for counts, each
    component's ``sums`` of the counts of the cells whose argmax there it is (K, G)."""
    was_training = module.training
    module.eval()
    sub = seeded_subsample(idx, max_cells, seed)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("z", "logits", "loc", "scale",
                                                           "log_pz")}
    out.update({k: [] for k in ("means", "mean_logits") if means})
    targets, covariates = [], []
    counts = means and module.likelihood.encoder_transform == "log1p"
    sums = None
    with seeded(seed, source.device):
        for batch in source.batches(sub, 1024):
            qz, qw, target = module.posteriors(batch.x, batch.c)
            if profiles:
                targets.append(target.cpu())
                covariates += [] if batch.c is None else [batch.c.cpu()]
            z, _ = module.latent.rsample(qz)
            prior = module.prior_z(qw.rsample(), batch.c)
            out["z"].append(z.double())
            out["logits"].append(module.classifier(z).double())
            out["loc"].append(prior.base_dist.loc.double())
            out["scale"].append(prior.base_dist.scale.double())
            out["log_pz"].append(prior.log_prob(z.unsqueeze(1)).double())
            if means:
                mean = module.latent.mean(qz)
                out["means"].append(mean.double().cpu())
                out["mean_logits"].append(module.classifier(mean).double().cpu())
                if counts:
                    label = mixture_probs(out["mean_logits"][-1], module.active.cpu(),
                                          None).argmax(1)
                    if sums is None:
                        sums = torch.zeros(len(module.active), target.shape[1],
                                           dtype=torch.float64)
                    sums.index_add_(0, label, target.double().cpu())
    module.train(was_training)
    if profiles:
        out["profiles"] = [depth_normalised(torch.cat(targets), torch.cat(covariates)
                                            if covariates else None,
                                            module.likelihood.encoder_transform == "log1p")]
    return {**{k: torch.cat(v) for k, v in out.items()}, **({"sums": sums} if counts else {}),
            "n_sub": torch.tensor(len(sub))}


@torch.no_grad()
def merge_components(module: torch.nn.Module, source: DataSource, idx: torch.Tensor,
                     seed: int, max_cells: int, rule: str | None = None
                     ) -> list[tuple[int, int]]:
    """Merge moves on a `CGMVAEModule` (`mergeable`) with at most ``max_cells`` of the
    training cells ``idx`` by ``rule`` (default the module's ``merge_rule``); gamma set to
    its optimum given the new q(y). Seeded, eval mode, the global RNG untouched. Returns the
    merges as (kept, removed) pairs."""
    rule = check_merge_rule(rule or getattr(module, "merge_rule", "elbo"))
    if len(idx) == 0 or not mergeable(module):
        return []
    d = mixture_draws(module, source, idx, seed, max_cells, profiles=rule == "lobes",
                      means=rule == "graph")
    z, logits = d["z"], d["logits"]
    if rule == "graph":
        active, merges = graph_merges(z, logits, d["loc"], d["scale"], module.active,
                                      d["means"], d["mean_logits"], module.n_labels, seed,
                                      sums=d.get("sums"))
    elif rule == "elbo":
        active, merges = greedy_merges(z, logits, d["loc"], d["log_pz"],
                                       module.alpha.double(), module.active,
                                       float(module.n_obs) / int(d["n_sub"]), module.n_labels)
    else:
        active, merges = greedy_overlap_merges(z, logits, d["loc"], d["scale"], module.active,
                                               rule, module.n_labels,
                                               profiles=d.get("profiles"))
    for i, j, a, sd in merges:
        apply_merge(module, i, j, a, sd)
    if merges:
        module.active.copy_(active)
        q = mixture_probs(logits, active, None)
        module.gamma.copy_(module.alpha + module.n_obs * q.mean(0).to(module.gamma.dtype))
    return [(i, j) for i, j, _, _ in merges]
