"""Candidate novelty scores for `bench_loto.py`, all from one fitted model per run (issue 23):
each is a p-value per query cell (high: typical of the reference), computed post hoc from
the query's latent, -ELBO, library size and label votes and the reference cells' own.

Per candidate the record holds the AUROC of -p for unseen vs known-type query cells and the
partial Spearman r of p with log library size among known-type cells given the predicted
label (``p_*``), and the same for the confidence the candidate would give,
max prob x `soft_factor(p, TAIL)` (``c_*``).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from geovae.tools.novelty import best_label_pvalues as novelty_best_label_pvalues
from geovae.tools.novelty import (
    combine_pvalues,
    depth_pvalues,
    empirical_pvalue,
    library_pvalues,
    mahalanobis_pvalues,
    neighbour_pvalues,
    shifted_pvalues,
    soft_factor,
)

#: the soft_factor tail every candidate's confidence uses here (the current DEPTH_TAIL)
TAIL = 0.05
#: neighbours for the kNN distance (transfer's n_neighbors default)
K = 15


def candidates(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """name -> p-values of the query cells, from the arrays of one run (`arrays_of`)."""
    pred, labels = a["pred_code"], a["ref_labels"]
    z, rz = a["z"].astype(np.float32), a["ref_z"].astype(np.float32)
    from geovae.models.reference import ReferenceCells
    from geovae.tools.novelty import novelty_pvalues

    cells = ReferenceCells(rz, labels, None, a["ref_nelbo"], a["ref_depth"])
    p = {"default": novelty_pvalues(z, a["nelbo"], a["depth"], cells, pred, K, "euclidean"),
         "maha_best": best_label_pvalues(a, "maha")}
    p |= {
        "elbo": shifted_pvalues(a["nelbo"], a["ref_nelbo"]),
        "depth_elbo": depth_pvalues(a["nelbo"], a["depth"], a["ref_nelbo"], a["ref_depth"]),
        "knn_label": neighbour_pvalues(z, rz, K, "euclidean", pred, labels),
        "knn_all": neighbour_pvalues(z, rz, K, "euclidean"),
        "maha_label": mahalanobis_pvalues(z, rz, pred, labels),
        "library_label": library_pvalues(a["depth"], a["ref_depth"], pred, labels),
    }
    if "ppc" in a:
        p["ppc_all"] = empirical_pvalue(a["ppc"], a["ref_ppc"])
        p["ppc_label"] = label_pvalues(a, "ppc", depth_adjust=False)
        p["ppc_label_depth"] = label_pvalues(a, "ppc")
        p["cauchy(ppcD,mahaB)"] = combine_pvalues([p["ppc_label_depth"], p["maha_best"]])
        p["cauchy(ppcD,mahaB,elboD)"] = combine_pvalues([p["ppc_label_depth"],
                                                         p["maha_best"],
                                                         label_pvalues(a, "elbo")])
    p["maha_best"] = best_label_pvalues(a, "maha")
    p["knn_best"] = best_label_pvalues(a, "knn")
    p["cauchy(mahaB,elboD)"] = combine_pvalues([p["maha_best"], label_pvalues(a, "elbo")])
    p["cauchy(knnB,mahaB,elboD)"] = combine_pvalues([p["knn_best"], p["maha_best"],
                                                     label_pvalues(a, "elbo")])
    p["query_share"] = query_share_pvalues(a)
    p["query_share_k15"] = query_share_pvalues(a, 15)
    p["cauchy(share,elboD)"] = combine_pvalues([p["query_share"],
                                                label_pvalues(a, "elbo")])
    for kind in ("knn", "maha", "elbo"):
        p[f"{kind}_label_depth"] = label_pvalues(a, kind)
        p[f"{kind}_label_depth_noshift"] = label_pvalues(a, kind, shift=False)
    p["elbo_label"] = label_pvalues(a, "elbo", depth_adjust=False)
    p["cauchy(knnD,elboD)"] = combine_pvalues([p["knn_label_depth"], p["elbo_label_depth"]])
    p["cauchy(knnD,mahaD,elboD)"] = combine_pvalues(
        [p["knn_label_depth"], p["maha_label_depth"], p["elbo_label_depth"]])
    p["cauchy(knnD,mahaD,elboD,lib)"] = combine_pvalues(
        [p["knn_label_depth"], p["maha_label_depth"], p["elbo_label_depth"],
         p["library_label"]])
    for how in ("cauchy", "fisher", "min"):
        p[f"{how}(knn,lib)"] = combine_pvalues([p["knn_label"], p["library_label"]], how)
        p[f"{how}(maha,lib)"] = combine_pvalues([p["maha_label"], p["library_label"]], how)
    p["cauchy(knn,maha,lib)"] = combine_pvalues(
        [p["knn_label"], p["maha_label"], p["library_label"]])
    p["cauchy(depth,knn)"] = combine_pvalues([p["depth_elbo"], p["knn_label"]])
    p["cauchy(depth,knn,lib)"] = combine_pvalues(
        [p["depth_elbo"], p["knn_label"], p["library_label"]])
    p["cauchy(depth,maha,lib)"] = combine_pvalues(
        [p["depth_elbo"], p["maha_label"], p["library_label"]])
    return p


def candidate_metrics(a: dict[str, np.ndarray], partial_spearman) -> dict[str, float]:
    """AUROC and partial r of every candidate's p and confidence (module docstring)."""
    novel = a["novel"].astype(bool)
    known = ~novel
    out = {}
    for name, p in candidates(a).items():
        conf = a["maxprob"] * soft_factor(p, TAIL)
        half = np.sqrt(a["maxprob"]) * soft_factor(p, TAIL)
        for kind, s in (("p", p), ("c", conf), ("h", half)):
            out[f"{kind}_auroc:{name}"] = float(roc_auc_score(novel, -s))
            out[f"{kind}_r:{name}"] = partial_spearman(s[known], a["depth"][known],
                                                       a["pred_code"][known])
    return out


def _label_stats(a: dict[str, np.ndarray], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(query, reference) per-cell statistic, each cell against the reference cells of its
    (predicted, for the query; own, for the reference) label: ``knn`` log mean distance to
    the K nearest (reference cells leave themselves out), ``maha`` log Mahalanobis
    distance (Ledoit-Wolf), ``elbo`` the -ELBO."""
    from sklearn.covariance import LedoitWolf

    from geovae.graph.neighbors import knn

    if kind in ("elbo", "ppc"):
        return a[f"{kind}" if kind == "ppc" else "nelbo"].astype(float), \
            a["ref_ppc" if kind == "ppc" else "ref_nelbo"].astype(float)
    z, rz = a["z"].astype(np.float64), a["ref_z"].astype(np.float64)
    q, r = np.zeros(len(z)), np.zeros(len(rz))
    for c in np.unique(a["ref_labels"]):
        ri, qi = np.flatnonzero(a["ref_labels"] == c), np.flatnonzero(a["pred_code"] == c)
        ref = rz[ri]
        if kind == "knn":
            kk = min(K, len(ri) - 1)
            r[ri] = np.log(knn(ref, ref, kk, "euclidean", exclude_self=True)[0].mean(1) + 1e-12)
            if len(qi):
                q[qi] = np.log(knn(z[qi], ref, kk, "euclidean")[0].mean(1) + 1e-12)
        else:
            fit = LedoitWolf().fit(ref)
            r[ri] = 0.5 * np.log(fit.mahalanobis(ref) + 1e-12)
            if len(qi):
                q[qi] = 0.5 * np.log(fit.mahalanobis(z[qi]) + 1e-12)
    return q, r


def label_pvalues(a: dict[str, np.ndarray], kind: str, depth_adjust: bool = True,
                  shift: bool = True) -> np.ndarray:
    """p-value of the `_label_stats` statistic among the predicted label's reference cells,
    optionally as residuals of a line in log library size fitted on that label's reference
    cells, after one query-wide shift (the median excess over the label medians, if > 0)."""
    q, r = _label_stats(a, kind)
    qd, rd = a["depth"].astype(float), a["ref_depth"].astype(float)
    pred, labels = a["pred_code"], a["ref_labels"]
    qres, rres = q.copy(), r.copy()
    groups = []
    for c in np.unique(labels):
        ri, qi = np.flatnonzero(labels == c), np.flatnonzero(pred == c)
        if depth_adjust:
            x = rd[ri] - rd[ri].mean()
            slope = (x * (r[ri] - r[ri].mean())).sum() / max((x ** 2).sum(), 1e-12)
            rres[ri] = r[ri] - slope * x
            qres[qi] = q[qi] - slope * (qd[qi] - rd[ri].mean())
        groups.append((qi, ri))
    excess = np.zeros(len(q))
    for qi, ri in groups:
        excess[qi] = qres[qi] - np.median(rres[ri])
    s = max(float(np.median(excess)), 0.0) if shift else 0.0
    out = np.ones(len(q))
    from geovae.tools.novelty import empirical_pvalue
    for qi, ri in groups:
        out[qi] = empirical_pvalue(qres[qi] - s, rres[ri])
    return out


def query_share_pvalues(a: dict[str, np.ndarray], k: int = 30) -> np.ndarray:
    """How much of a query cell's neighbourhood in the latent (its k nearest among the
    reference and query cells, itself left out) is query cells, over the share the query
    makes up; ranked among the reference cells' own share of reference cells over theirs
    (mirror image): a type the reference lacks sits among query cells only."""
    from geovae.graph.neighbors import knn
    from geovae.tools.novelty import empirical_pvalue

    z, rz = a["z"].astype(np.float64), a["ref_z"].astype(np.float64)
    both = np.concatenate([rz, z])
    is_query = np.r_[np.zeros(len(rz), bool), np.ones(len(z), bool)]
    _, idx = knn(both, both, k, "euclidean", exclude_self=True)
    share = is_query[idx].mean(1)
    q_excess = share[len(rz):] / is_query.mean()
    r_excess = (1 - share[:len(rz)]) / (1 - is_query.mean())
    return empirical_pvalue(q_excess, r_excess)


def best_label_pvalues(a: dict[str, np.ndarray], kind: str = "maha") -> np.ndarray:
    """`geovae.tools.novelty.best_label_pvalues` (Mahalanobis, or the K-nearest mean) of a
    run's saved arrays, over every reference label however small (``min_cells=1``: how the
    development record's candidates were scored)."""
    return novelty_best_label_pvalues(
        a["z"], a["ref_z"], a["ref_labels"], K, "euclidean",
        "mahalanobis" if kind == "maha" else "neighbours", min_cells=1)


def ppc_zscore(model, source, n_rep: int = 10, seed: int = 0) -> np.ndarray:
    """Per cell, how far its count log-likelihood under the model (z = posterior mean) falls
    below what the model's own NB draws for that cell give: (sum over genes of
    -log p(x_g) - mean of -log p(x~_g)) / sqrt(sum of their variances), ``n_rep`` draws
    x~ ~ p(x|z) per cell (a posterior predictive check; depth enters the NB itself)."""
    import torch

    from geovae._rng import seeded
    from geovae.data import map_batches

    module = model.module
    module.eval()

    def one(b):
        x_in, target, library = module.transform(b.x)
        z = module.latent.mean(module.encode(x_in, b.c))
        px = module.decode(z, b.c, library)
        nll = -px.log_prob(target)
        reps = -px.log_prob(px.sample((n_rep,)))
        excess = (nll - reps.mean(0)).sum(-1)
        return excess / reps.var(0).sum(-1).clamp_min(1e-12).sqrt()

    with torch.no_grad(), seeded(seed, source.device):
        return map_batches(source, one).numpy().astype(np.float64)
