"""benchmarks/loto_query.py: its fast candidates (neighbours computed once per run) count
each cell's own side as `geovae.tools.query_share` does, and the candidate it names as
shipped is what `novelty.novelty_pvalues` computes (then made depth-free in the query's terms,
`depth_free.query_depth_free`)."""

from __future__ import annotations

import numpy as np
from helpers import load_benchmark


def test_own_share_counts_the_neighbours_of_each_side() -> None:
    from geovae.tools.query_share import own_side_share

    mod = load_benchmark("loto_query")
    ref = np.array([[0.0], [0.1], [0.2], [10.0]])
    query = np.array([[10.1], [10.2], [0.3]])
    # reference 0 and 0.1: two reference neighbours; 0.2: 0.3 and 0.1; 10: two query cells;
    # query 10.1 and 10.2: each other and 10; query 0.3: two reference cells
    expected = [1.0, 1.0, 0.5, 0.0, 0.5, 0.5, 0.0]
    np.testing.assert_allclose(mod.own_share(query, ref, 2), expected)
    np.testing.assert_allclose(own_side_share(query, ref, 2, "euclidean"), expected)


def test_the_shipped_scores_are_the_candidates_named() -> None:
    """On a simulated run (three labels, a query with one more type beside label 0): the
    default (``--novelty query``) is the overall and label share's larger p-value combined
    with the reference-only check, ``reference`` that check, ``query-overall`` the opt-in
    before."""
    mod = load_benchmark("loto_query")
    rng = np.random.default_rng(0)
    centres = np.zeros((4, 6))
    centres[1, 1], centres[2, 2], centres[3, 3] = 6.0, 6.0, 2.5
    ref_labels = np.repeat([0, 1, 2], 200)
    truth = np.r_[np.repeat([0, 1, 2], 150), np.full(60, 3)]
    depth, ref_depth = rng.normal(7, 0.5, len(truth)), rng.normal(7, 0.5, 600)
    run = {"z": centres[truth] + rng.normal(size=(len(truth), 6)),
           "ref_z": centres[ref_labels] + rng.normal(size=(600, 6)), "ref_labels": ref_labels,
           "pred_code": np.minimum(truth, 2) * (truth < 3), "depth": depth,
           "ref_depth": ref_depth, "nelbo": 300 * depth + rng.gumbel(size=len(truth)),
           "ref_nelbo": 300 * ref_depth + rng.gumbel(size=600)}
    p = mod.candidates(run)
    from geovae.tools.depth_free import query_depth_free

    def free(q: np.ndarray) -> np.ndarray:  # the shipped checks' last step (issue 23 item 1)
        return query_depth_free(q, depth, run["pred_code"])

    both = "cauchy(before,max(share_k150_s15x3_d,share_k150_s15x3_d_labelbase))"
    np.testing.assert_allclose(p["shipped"], free(p[both]), rtol=1e-10)
    np.testing.assert_allclose(p["query"], p["shipped"], rtol=1e-10)
    np.testing.assert_allclose(p["query-overall"],
                               free(p["cauchy(before,share_k150_s15x3_d)"]), rtol=1e-10)
    np.testing.assert_allclose(p["reference"], free(p["before"]), rtol=1e-10)
    assert not np.allclose(p["shipped"], p["before"])
    assert not np.allclose(p["shipped"], p["query-overall"])


def test_the_label_base_rate_leaves_a_commoner_known_type_alone() -> None:
    """No unseen type; label 0 makes up 40 % of the query and 33 % of the reference: against
    the query's overall share its cells read as query-dense (most below p = 0.05), against
    its label's share (``_labelbase``) far fewer are."""
    from geovae.graph.neighbors import knn

    mod = load_benchmark("loto_query")
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0, 0, 0, 0], [8.0, 0, 0, 0, 0], [0.0, 8.0, 0, 0, 0]])
    ref_labels, predicted = np.repeat([0, 1, 2], 600), np.repeat([0, 1, 2], [480, 360, 360])
    rz = centres[ref_labels] + rng.normal(size=(1800, 5))
    z = centres[predicted] + rng.normal(size=(1200, 5))
    depths = (rng.normal(7, 0.6, 1200), rng.normal(7, 0.6, 1800), predicted, ref_labels)
    both = np.vstack([rz, z])
    joint = knn(both, both, 150, "euclidean", exclude_self=True)[1]
    side = (knn(rz, rz, 15, "euclidean", exclude_self=True)[1],
            knn(z, z, 15, "euclidean", exclude_self=True)[1])
    overall = mod._share_p(z, rz, joint, side, 150, 15, 3, None, None, depths)
    by_label = mod.label_base_p(z, rz, joint, side, 150, 15, 3, depths)
    assert np.mean(overall[predicted == 0] < 0.05) > 0.3
    assert np.mean(by_label[predicted == 0] < 0.05) < 0.1
