"""The least-squares line of y on x, the one formula behind every depth adjustment of the
unknown-type check (`geovae.tools.novelty`, `geovae.tools.query_share`)."""

from __future__ import annotations

import numpy as np


def least_squares_line(x: np.ndarray, y: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x mean, y mean, slope) of the least-squares line of ``y`` on ``x`` along the last
    axis (one line per row of 2-D arrays), each with that axis kept (length 1); slope 0
    where x does not vary."""
    x_mean, y_mean = x.mean(-1, keepdims=True), y.mean(-1, keepdims=True)
    var = ((x - x_mean) ** 2).sum(-1, keepdims=True)
    cov = ((x - x_mean) * (y - y_mean)).sum(-1, keepdims=True)
    return x_mean, y_mean, np.where(var > 0, cov / np.maximum(var, 1e-12), 0.0)
