"""The unknown-type check's statistics (`geovae.tools.novelty`): empirical p-values are
uniform under the null, the query's condition shift is removed before ranking, cells of a
type the reference lacks get small p-values, and the confidence factor keeps their order."""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

from geovae.tools.novelty import (
    best_label_pvalues,
    combine_pvalues,
    depth_pvalues,
    empirical_pvalue,
    library_pvalues,
    mahalanobis_pvalues,
    neighbour_pvalues,
    shifted_pvalues,
    soft_factor,
)


def test_empirical_pvalue_is_uniform_under_the_null_and_bounded() -> None:
    rng = np.random.default_rng(0)
    ref, query = rng.gumbel(size=5000), rng.gumbel(size=2000)
    p = empirical_pvalue(query, ref)
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert empirical_pvalue(np.array([ref.max() + 1.0]), ref)[0] == 1 / (len(ref) + 1)
    assert empirical_pvalue(np.array([ref.min() - 1.0]), ref)[0] == 1.0


def test_soft_factor_is_one_at_one_half_at_the_tail_and_strictly_increasing() -> None:
    p = np.linspace(1e-4, 1, 1000)
    f = soft_factor(p, 0.02)
    assert np.all(np.diff(f) > 0)
    assert f[-1] == 1.0 and 0.49 < soft_factor(np.array([0.02]), 0.02)[0] < 0.52


def test_the_query_shift_is_removed_before_ranking() -> None:
    rng = np.random.default_rng(1)
    ref, query = rng.gumbel(size=4000), rng.gumbel(size=3000) + 2.5  # a new condition
    p = shifted_pvalues(query, ref)
    assert stats.kstest(p, "uniform").pvalue > 0.001
    assert abs(np.mean(p < 0.05) - 0.05) < 0.015
    # a query that fits better than the reference is not shifted the other way
    better = ref[:500] - 1.0
    np.testing.assert_array_equal(shifted_pvalues(better, ref), empirical_pvalue(better, ref))


def test_unseen_cells_get_small_pvalues_wherever_they_land() -> None:
    """One shift for the whole query: a type the reference lacks is flagged even where it
    makes up most of the cells given one label (a shift per label would absorb it)."""
    rng = np.random.default_rng(2)
    ref_labels = np.repeat([0, 1, 2], 1000)
    ref = rng.normal(size=3000)
    predicted = np.repeat([0, 1, 2], [900, 900, 150])
    query = rng.normal(size=1950) + 1.0
    novel = np.zeros(1950, bool)
    novel[1800 + np.arange(120)] = True  # 120 of label 2's 150 query cells
    query[novel] += 4.0
    for labels in [(None, None), (predicted, ref_labels)]:
        p = shifted_pvalues(query, ref, *labels)
        assert roc_auc_score(novel, -p) > 0.95
        assert np.mean(p[novel] < 0.02) > 0.6 and np.mean(p[~novel] < 0.02) < 0.05


def test_neighbour_pvalues_flag_cells_far_from_their_label() -> None:
    rng = np.random.default_rng(4)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    ref_labels = np.repeat([0, 1], 400)
    ref = centres[ref_labels] + rng.normal(size=(800, 3))
    predicted = np.repeat([0, 1], 300)
    query = centres[predicted] + 1.2 * rng.normal(size=(600, 3))  # a wider new condition
    novel = np.zeros(600, bool)
    novel[:40] = True
    query[:40] = centres[0] + [0.0, 6.0, 0.0] + rng.normal(size=(40, 3))
    p = neighbour_pvalues(query.astype(np.float32), ref.astype(np.float32), 15, "euclidean",
                          predicted, ref_labels)
    assert roc_auc_score(novel, -p) > 0.95
    assert np.mean(p[~novel] < 0.02) < 0.06


def _deep_cells(rng: np.random.Generator, n: int, mean_depth: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """(-ELBO, log library size) of cells the reference explains equally well at every
    depth: the -ELBO grows with the counts, and so does its spread."""
    depth = rng.normal(mean_depth, 0.6, size=n)
    counts = np.exp(depth)
    return 0.8 * counts + np.sqrt(counts) * rng.gumbel(size=n), depth


def _partial_spearman(score: np.ndarray, depth: np.ndarray) -> float:
    return float(stats.spearmanr(score, depth)[0])


def test_depth_pvalues_are_uniform_at_every_depth_and_not_a_depth_proxy() -> None:
    """Query cells of the reference's distribution (deeper on average, from a new condition
    whose extra misfit grows with the -ELBO's spread): the p-values within each depth
    tercile are uniform (KS)
    and their rank correlation with depth is below 0.1, where ranking the total -ELBO
    among all reference cells (`shifted_pvalues`, the score before issue 23) is a depth
    proxy."""
    rng = np.random.default_rng(5)
    ref, ref_depth = _deep_cells(rng, 6000, 7.0)
    query, depth = _deep_cells(rng, 3000, 7.4)
    query = query + 1.5 * np.sqrt(np.exp(depth))  # a new condition: removed by the shift
    p = depth_pvalues(query, depth, ref, ref_depth)
    terciles = np.quantile(depth, [1 / 3, 2 / 3])
    for part in np.split(np.argsort(depth), 3):
        assert stats.kstest(p[part], "uniform").pvalue > 0.001, terciles
    assert abs(_partial_spearman(p, depth)) < 0.1
    old = shifted_pvalues(query, ref)
    assert abs(_partial_spearman(old, depth)) > 0.3  # the data can tell the two apart
    assert min(stats.kstest(old[part], "uniform").pvalue
               for part in np.split(np.argsort(depth), 3)) < 1e-6


def test_depth_pvalues_still_flag_cells_the_reference_explains_badly() -> None:
    rng = np.random.default_rng(6)
    ref, ref_depth = _deep_cells(rng, 4000, 7.0)
    query, depth = _deep_cells(rng, 2000, 7.0)
    novel = np.zeros(2000, bool)
    novel[:100] = True
    query[novel] += 6.0 * np.sqrt(np.exp(depth[novel]))  # worse fit at their own depth
    depth[novel] -= 0.8  # and shallower: the total -ELBO alone would call them typical
    p = depth_pvalues(query, depth, ref, ref_depth)
    assert roc_auc_score(novel, -p) > 0.95
    assert np.mean(p[~novel] < 0.02) < 0.05


def test_depth_pvalues_in_chunks_equal_one_pass(monkeypatch) -> None:
    """Query cells are scored in chunks (memory bounded by `CHUNK_VALUES`, not by query x
    reference cells): the p-values are exactly those of a single pass."""
    from geovae.tools import novelty

    rng = np.random.default_rng(7)
    ref, ref_depth = _deep_cells(rng, 3000, 7.0)
    query, depth = _deep_cells(rng, 1000, 7.3)
    query = query + 0.5 * np.sqrt(np.exp(depth))
    one_pass = depth_pvalues(query, depth, ref, ref_depth)
    monkeypatch.setattr(novelty, "CHUNK_VALUES", 600 * 37)  # window 600: chunks of 37 cells
    chunked = depth_pvalues(query, depth, ref, ref_depth)
    assert np.array_equal(chunked, one_pass)
    assert one_pass.min() < 0.05 < one_pass.max()  # not a trivial constant


def test_combined_pvalues_hold_their_level_under_the_null() -> None:
    """Independent uniform p-values: Fisher's combination is uniform (KS), Cauchy's and
    Bonferroni's min keep P(p < 0.05) at or below about 0.05; a cell small in one p is small
    after combining."""
    rng = np.random.default_rng(8)
    ps = [rng.uniform(size=20000) for _ in range(3)]
    assert stats.kstest(combine_pvalues(ps, "fisher"), "uniform").pvalue > 0.01
    assert abs(np.mean(combine_pvalues(ps, "cauchy") < 0.05) - 0.05) < 0.008
    assert np.mean(combine_pvalues(ps, "min") < 0.05) < 0.05
    small = [np.array([1e-4]), np.array([0.9]), np.array([1.0])]
    for how in ("cauchy", "fisher", "min"):
        assert combine_pvalues(small, how)[0] < 0.01, how


def test_library_pvalues_flag_a_depth_atypical_for_the_label_not_a_shifted_query() -> None:
    """The whole query deeper (another run): p-values stay uniform; cells predicted as label
    0 with label 1's depth (not monotone in depth: label 1 is shallower) are flagged."""
    rng = np.random.default_rng(9)
    ref_labels = np.repeat([0, 1], 2000)
    ref_depth = np.where(ref_labels == 0, 8.0, 6.5) + 0.3 * rng.normal(size=4000)
    predicted = np.repeat([0, 1], 1500)
    depth = np.where(predicted == 0, 8.0, 6.5) + 0.3 * rng.normal(size=3000) + 0.7
    p = library_pvalues(depth, ref_depth, predicted, ref_labels)
    assert stats.kstest(p, "uniform").pvalue > 0.001
    novel = np.zeros(3000, bool)
    novel[:100] = True
    depth[:100] = 6.5 + 0.7 + 0.3 * rng.normal(size=100)
    p = library_pvalues(depth, ref_depth, predicted, ref_labels)
    assert roc_auc_score(novel, -p) > 0.95
    assert np.mean(p[~novel] < 0.02) < 0.05


def test_mahalanobis_pvalues_flag_cells_beside_their_label() -> None:
    """An unseen cluster next to label 0 (inside its kNN reach, off its covariance's axis)
    is flagged; the known query cells, from a wider new condition, are not."""
    rng = np.random.default_rng(10)
    scale = np.array([3.0, 0.3, 0.3])
    ref_labels = np.repeat([0, 1], 500)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    ref = centres[ref_labels] + scale * rng.normal(size=(1000, 3))
    predicted = np.repeat([0, 1], 400)
    query = centres[predicted] + 1.1 * scale * rng.normal(size=(800, 3))
    novel = np.zeros(800, bool)
    novel[:60] = True
    query[:60] = [0.0, 1.5, 0.0] + scale * rng.normal(size=(60, 3)) / 3
    p = mahalanobis_pvalues(query, ref, predicted, ref_labels)
    assert roc_auc_score(novel, -p) > 0.95
    assert np.mean(p[~novel] < 0.02) < 0.06


def _reference_like(rng: np.random.Generator, centres: np.ndarray, labels: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latent, -ELBO, log library) of cells the model explains equally well at every depth
    (the -ELBO about a line in log library size within a label, as on the Kang data)."""
    z = centres[labels] + rng.normal(size=(len(labels), centres.shape[1]))
    depth = rng.normal(7.0, 0.6, size=len(labels))
    return z, 300.0 * depth + 40.0 * rng.gumbel(size=len(labels)), depth


def test_the_default_flags_an_unseen_type_beside_a_known_one_not_deeper_cells() -> None:
    """`novelty_pvalues` (the default): an unseen cluster 4 sd beside label 0 (nearer it than
    any other label), explained a little worse, is flagged (AUROC > 0.9) though its votes
    go to label 0; known cells of a new condition (shifted latent, worse -ELBO) and known
    cells 0.8 deeper in log library size (their -ELBO as high as that depth gives) are not:
    at most 8% below p = 0.05, and partial rank correlation with depth below 0.1."""
    from geovae.models.reference import ReferenceCells
    from geovae.tools.novelty import novelty_pvalues

    rng = np.random.default_rng(11)
    centres = np.array([[0.0, 0, 0, 0, 0], [6.0, 0, 0, 0, 0], [0.0, 6.0, 0, 0, 0]])
    ref_labels = np.repeat([0, 1, 2], 600)
    rz, rn, rd = _reference_like(rng, centres, ref_labels)
    cells = ReferenceCells(rz.astype(np.float32), ref_labels, None, rn, rd)
    predicted = np.repeat([0, 1, 2], 400)
    z, nelbo, depth = _reference_like(rng, centres, predicted)
    z += 0.3  # a new condition
    nelbo += 20.0
    deeper = np.zeros(1200, bool)
    deeper[400:600] = True  # label 1, deeper: -ELBO as that depth gives
    depth[deeper] += 0.8
    nelbo[deeper] += 300.0 * 0.8
    novel = np.zeros(1200, bool)
    novel[:80] = True  # label 0's votes, 4 sd off its centre, explained a little worse
    z[:80] = centres[0] + [0.0, 0.0, 4.0, 0.0, 0.0] + 0.5 * rng.normal(size=(80, 5))
    nelbo[:80] += 60.0
    p = novelty_pvalues(z, nelbo, depth, cells, predicted, 15, "euclidean")
    assert roc_auc_score(novel, -p) > 0.9
    assert np.mean(p[deeper] < 0.05) < 0.08 and np.mean(p[~novel] < 0.05) < 0.08
    known = ~novel
    assert abs(_partial_spearman(p[known], depth[known])) < 0.1


def test_a_mostly_unseen_query_is_absorbed_by_the_shift() -> None:
    """What docs/transfer.md says the check does not catch: the query-wide shift is the median
    excess, so an unseen type is flagged as a minority of the query and not as most of it."""
    rng = np.random.default_rng(0)
    ref = np.vstack([rng.normal(0, 1, (200, 5)), rng.normal(6, 1, (200, 5))])
    labels = np.repeat([0, 1], 200)
    known, unseen = rng.normal(0, 1, (100, 5)), rng.normal([3, -6, 0, 0, 0], 1, (100, 5))
    flagged = {}
    for n_unseen in (30, 70, 100):
        query = np.vstack([known[:100 - n_unseen], unseen[:n_unseen]])
        p = best_label_pvalues(query, ref, labels, 15, "euclidean")
        flagged[n_unseen] = float(np.mean(p[100 - n_unseen:] < 0.05))
    assert flagged[30] == 1.0
    assert flagged[70] == 0.0 and flagged[100] == 0.0


def test_the_query_check_flags_an_unseen_type_overlapping_a_known_one() -> None:
    """An unseen type 2 sd beside label 0 (within its reach: the default, reference-only
    check finds it with AUROC < 0.8), explained as well as label 0 and voted label 0: the
    share of query cells around it in the joint latent (the default ``check="query"``,
    `query_share`; here as ``"query-overall"``: every label as common in the query) lifts it
    by more than 0.08 (0.69 -> 0.84 here)."""
    from geovae.models.reference import ReferenceCells
    from geovae.tools.novelty import combine_pvalues, label_depth_pvalues, novelty_pvalues

    rng = np.random.default_rng(12)
    centres = np.array([[0.0, 0, 0, 0, 0], [8.0, 0, 0, 0, 0], [0.0, 8.0, 0, 0, 0]])
    ref_labels = np.repeat([0, 1, 2], 600)
    rz, rn, rd = _reference_like(rng, centres, ref_labels)
    cells = ReferenceCells(rz, ref_labels, None, rn, rd)
    predicted = np.repeat([0, 1, 2], 400)
    z, nelbo, depth = _reference_like(rng, centres, predicted)
    novel = np.zeros(1200, bool)
    novel[:120] = True
    z[:120] = centres[0] + [0.0, 0.0, 2.0, 0.0, 0.0] + rng.normal(size=(120, 5))
    p = novelty_pvalues(z, nelbo, depth, cells, predicted, 15, "euclidean")  # the default
    default = novelty_pvalues(z, nelbo, depth, cells, predicted, 15, "euclidean", "reference")
    parts = combine_pvalues([best_label_pvalues(z, rz, ref_labels, 15, "euclidean", kind)
                             for kind in ("neighbours", "mahalanobis")]
                            + [label_depth_pvalues(nelbo, depth, rn, rd, predicted, ref_labels)])
    auroc = roc_auc_score(novel, -p)
    from geovae.tools.depth_free import query_depth_free
    np.testing.assert_allclose(default, query_depth_free(parts, depth, predicted), rtol=1e-9)
    from geovae.tools.novelty import NOVELTY_TAIL, soft_factor, typicality
    for check, pv in (("query", p), ("reference", default)):  # what transfer(novelty=) calls
        factor, ran = typicality(z, nelbo, cells, predicted, 15, "euclidean", depth, check)
        np.testing.assert_allclose(factor, soft_factor(pv, NOVELTY_TAIL))
        assert ran == check
    assert typicality(z, nelbo, cells, predicted, 15, "euclidean", None, "query")[1] == "earlier"
    assert roc_auc_score(novel, -parts) < 0.8
    assert auroc > 0.82 and auroc > roc_auc_score(novel, -parts) + 0.08
    assert np.mean(p[~novel] < 0.05) < 0.08
