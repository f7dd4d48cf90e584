"""`geovae.tools.query_share`: the share of query cells around a query cell in the joint
latent flags an unseen type that overlaps a known one (where distances to the reference
barely can), holds its level for a query drawn like the reference and shifted as a whole,
and does not follow depth where shallow cells sit apart and the query is shallower."""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

from geovae.tools.novelty import best_label_pvalues, shifted_pvalues
from geovae.tools.query_share import label_base_rates, own_side_share, query_share_stats


def _data(rng: np.random.Generator, unseen: int = 120, offset: float = 2.0):
    """Reference: three labels (300 cells each, unit spread, 8 dimensions, centres 8 apart);
    query: 250 cells of each label and ``unseen`` cells of a type ``offset`` sd beside
    label 0 (overlapping it). Log library sizes N(7, 0.5) on both sides."""
    centres = np.zeros((4, 8))
    centres[1, 1], centres[2, 2], centres[3, 3] = 8.0, 8.0, offset
    ref_labels = np.repeat([0, 1, 2], 300)
    truth = np.r_[np.repeat([0, 1, 2], 250), np.full(unseen, 3)]
    ref = centres[ref_labels] + rng.normal(size=(900, 8))
    query = centres[truth] + rng.normal(size=(len(truth), 8))
    return (ref, ref_labels, rng.normal(7, 0.5, 900), query, rng.normal(7, 0.5, len(truth)),
            truth == 3)


def _pvalues(query, ref, depth, ref_depth, predicted, ref_labels):
    return shifted_pvalues(*query_share_stats(query, ref, "euclidean", depth, ref_depth,
                                              predicted, ref_labels)[0])


def test_own_side_share_counts_each_cells_neighbours_of_its_side() -> None:
    ref = np.array([[0.0], [0.1], [0.2], [10.0]])
    query = np.array([[10.1], [10.2], [0.3]])
    # reference 0 and 0.1: two reference neighbours; 0.2: 0.3 and 0.1; 10: two query cells;
    # query 10.1 and 10.2: each other and 10; query 0.3: two reference cells
    np.testing.assert_allclose(own_side_share(query, ref, 2, "euclidean"),
                               [1.0, 1.0, 0.5, 0.0, 0.5, 0.5, 0.0])


def test_an_unseen_type_overlapping_a_known_one_is_flagged() -> None:
    """Known cells away from it keep their level; label 0's known cells in the same region
    are flagged more (26-36 % below p = 0.05 over seeds 0-2): the price of a region score."""
    rng = np.random.default_rng(0)
    ref, ref_labels, ref_depth, query, depth, novel = _data(rng)
    predicted = np.r_[np.repeat([0, 1, 2], 250), np.zeros(120, int)]  # votes of label 0
    p = _pvalues(query, ref, depth, ref_depth, predicted, ref_labels)
    distance = best_label_pvalues(query, ref, ref_labels, 15, "euclidean")
    assert roc_auc_score(novel, -p) > 0.9
    assert roc_auc_score(novel, -distance) < 0.8
    away = ~novel & (predicted > 0)
    assert np.mean(p[novel] < 0.05) > 0.5 and np.mean(p[away] < 0.05) < 0.05


def test_a_query_drawn_like_the_reference_holds_its_level() -> None:
    """No unseen type, 750 query cells against 900 reference cells, the whole query moved
    0.5 sd (a new condition): no more cells below 0.05 or 0.2 than those levels, give or
    take (the mirror image is a little conservative: 3 % and 12 % here)."""
    rng = np.random.default_rng(1)
    ref, ref_labels, ref_depth, query, depth, _ = _data(rng, unseen=0)
    predicted = np.repeat([0, 1, 2], 250)
    p = _pvalues(query + 0.5, ref, depth, ref_depth, predicted, ref_labels)
    assert np.mean(p < 0.05) < 0.07 and np.mean(p < 0.2) < 0.24
    assert np.median(p) > 0.4


def test_shallow_cells_apart_in_a_shallower_query_do_not_make_it_a_depth_proxy() -> None:
    """Shallow cells sit apart in the latent (coordinate 0 moves 2 sd per unit of log library
    size) and the query is 0.4 shallower: the raw share follows depth among known cells,
    the depth-adjusted one does not (|Spearman| < 0.1)."""
    rng = np.random.default_rng(2)
    ref, ref_labels, ref_depth, query, depth, _ = _data(rng, unseen=0)
    depth = depth - 0.4
    ref[:, 0] += 2.0 * (ref_depth - 7.0)
    query[:, 0] += 2.0 * (depth - 7.0)
    predicted = np.repeat([0, 1, 2], 250)
    p = _pvalues(query, ref, depth, ref_depth, predicted, ref_labels)
    # constant depths: no line to take out (the share before the depth adjustment)
    raw = shifted_pvalues(*query_share_stats(query, ref, "euclidean", np.zeros(750),
                                             np.zeros(900), predicted, ref_labels)[0])
    assert abs(stats.spearmanr(raw, depth)[0]) > 0.2
    assert abs(stats.spearmanr(p, depth)[0]) < 0.1


def test_label_base_rates_are_each_sides_share_of_its_label() -> None:
    """Label 0: 3 query cells, 1 reference cell; label 1: 1 and 2; an unlabelled reference
    cell (-1) takes the reference's overall share, 4 of 8."""
    base_q, base_r = label_base_rates(np.array([0, 0, 0, 1]), np.array([0, 1, 1, -1]), 150)
    np.testing.assert_allclose(base_q, [3 / 4, 3 / 4, 3 / 4, 1 / 3])
    np.testing.assert_allclose(base_r, [1 / 4, 2 / 3, 2 / 3, 1 / 2])
    # clipped to what k neighbours can show: (0.5, k + 0.5) / (k + 1)
    base_q, _ = label_base_rates(np.zeros(50, int), np.ones(5, int), 2)
    np.testing.assert_allclose(base_q, 2.5 / 3)
