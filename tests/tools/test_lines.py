"""The one least-squares line behind the unknown check's depth adjustments
(`geovae.tools._lines`): numpy's polyfit in closed form, per row and for one line, and the
residuals `query_share.depth_residuals` leaves are the line's within each group."""

from __future__ import annotations

import numpy as np

from geovae.tools._lines import least_squares_line
from geovae.tools.query_share import depth_residuals


def test_the_line_is_polyfit_per_row_and_flat_where_x_is_constant() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(7.0, 1.0, (6, 200))
    y = 2.5 * x - 3.0 + rng.normal(0.0, 0.5, x.shape)
    x[5] = 6.5  # a row without spread: slope 0, not a division by nothing
    x_mean, y_mean, slope = least_squares_line(x, y)
    assert x_mean.shape == y_mean.shape == slope.shape == (6, 1)
    for row in range(5):
        fitted, intercept = np.polyfit(x[row], y[row], 1)
        assert abs(slope[row, 0] - fitted) < 1e-10
        assert abs(y_mean[row, 0] - slope[row, 0] * x_mean[row, 0] - intercept) < 1e-9
    assert slope[5, 0] == 0.0
    one = least_squares_line(x[0], y[0])
    assert [v.shape for v in one] == [(1,)] * 3 and one[2][0] == slope[0, 0]


def test_depth_residuals_take_out_each_groups_own_line() -> None:
    rng = np.random.default_rng(1)
    groups = np.repeat([0, 1, 2], [300, 200, 2])  # the last too small to fit: kept
    depth = rng.normal(7.0, 1.0, len(groups))
    stat = np.where(groups == 0, 1.5, -0.7) * depth + rng.normal(0.0, 1.0, len(groups))
    out = depth_residuals(stat, depth, groups)
    for g in (0, 1):
        rows = groups == g
        slope, _ = np.polyfit(depth[rows], stat[rows], 1)
        expected = stat[rows] - slope * (depth[rows] - depth[rows].mean())
        np.testing.assert_allclose(out[rows], expected, rtol=0, atol=1e-9)
        assert abs(np.corrcoef(out[rows], depth[rows])[0, 1]) < 1e-9
    np.testing.assert_array_equal(out[groups == 2], stat[groups == 2])
