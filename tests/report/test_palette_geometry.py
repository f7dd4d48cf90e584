"""Colours and the maths of the latent pictures: colour-blind-safe palettes, one colour per
category across panels, Poincaré geodesics orthogonal to the rim, the sphere map's rotation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from geovae.report.figures import geodesic_grid, rotate_to_front, sphere_lonlat
from geovae.report.palette import MISSING, OKABE_ITO, TOL_12, category_colors, palette


def test_palettes_by_size_are_distinct() -> None:
    assert palette(8) == OKABE_ITO and palette(3) == OKABE_ITO[:3]
    assert palette(10) == TOL_12[:10]
    for n in (8, 12, 20, 54):
        rgb = np.array([to_rgb(c) for c in palette(n)])
        d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(n)
        assert d.min() > 0.05, n  # no two alike
        assert not any(np.allclose(c, to_rgb(MISSING), atol=0.08) for c in rgb), n


def test_same_category_same_colour_and_unknown_grey() -> None:
    known = ["B", "T", "NK"]
    predicted = ["T", "unknown", "B"]
    colours = category_colors(known, predicted)
    assert colours["unknown"] == MISSING
    assert [colours[c] for c in known] == OKABE_ITO[:3]  # unknown takes no palette slot
    assert category_colors(known, predicted) == colours  # deterministic


def test_umap_figure_shares_label_colours(tmp_path) -> None:
    import anndata as ad

    from geovae import _keys as K
    from geovae.report.plot import save_figure, umap_figure

    rng = np.random.default_rng(0)
    cats = ["B", "NK", "T"]
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(cats, 60)),
                        K.LABEL: pd.Categorical(rng.choice(cats[::-1], 60),
                                                categories=cats[::-1]),
                        K.CLUSTER: pd.Categorical(rng.choice(["0", "1"], 60))},
                       index=[f"c{i}" for i in range(60)])
    a = ad.AnnData(obs=obs, obsm={K.UMAP: rng.normal(size=(60, 2))})
    fig = umap_figure(a, ["cell_type"], label_key="cell_type")
    known = dict(zip(a.obs["cell_type"].cat.categories, a.uns["cell_type_colors"], strict=True))
    pred = dict(zip(a.obs[K.LABEL].cat.categories, a.uns[f"{K.LABEL}_colors"], strict=True))
    assert known == pred  # T is the same colour in both panels
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == [
        "Clusters (Leiden)", "Known labels (cell_type)", "Predicted label"]
    save_figure(fig, tmp_path / "u.png", tmp_path / "u.png")
    from PIL import Image

    assert Image.open(tmp_path / "u.png").info["dpi"][0] >= 199
    fig = umap_figure(a, ["cell_type"], label_key="cell_type")
    save_figure(fig, tmp_path / "u.svg", tmp_path / "u.svg")
    svg = (tmp_path / "u.svg").read_text()
    assert "<svg" in svg and "Predicted label" in svg  # text stays text


@pytest.mark.parametrize("t", [0.5, 1.0, 2.0, 3.0])
def test_poincare_grid_lines_are_geodesics(t: float) -> None:
    """Each arc ends on the unit circle at right angles (circle centre c, radius r with
    c² = 1 + r²) and crosses its diameter at hyperbolic distance t."""
    arcs = geodesic_grid((t,))[2:]
    a = np.tanh(t / 2)
    for arc in arcs:
        assert np.all(np.linalg.norm(arc, axis=1) <= 1 + 1e-9)
        assert np.allclose(np.linalg.norm(arc[[0, -1]], axis=1), 1, atol=1e-9)
        # the circle through the arc: centre on the axis the arc crosses
        mid = arc[len(arc) // 2]
        assert np.isclose(np.abs(mid).max(), a) and np.isclose(np.abs(mid).min(), 0, atol=1e-9)
        end = arc[0]
        axis = np.argmax(np.abs(mid))
        centre = np.zeros(2)
        centre[axis] = np.sign(mid[axis]) * (a + 1 / a) / 2
        radius = np.linalg.norm(end - centre)
        assert np.isclose(np.linalg.norm(centre) ** 2, 1 + radius ** 2)  # orthogonal
        assert np.allclose(np.linalg.norm(arc - centre, axis=1), radius)
        # hyperbolic distance of the crossing point from the centre is t
        assert np.isclose(2 * np.arctanh(np.abs(mid).max()), t)


def test_sphere_map_rotation_is_proper_and_centres_the_cells() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal([0.2, -0.5, 0.8], 0.1, size=(500, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rotate_to_front(x)
    assert np.allclose(np.linalg.norm(y, axis=1), 1)
    assert np.allclose(x @ x.T, y @ y.T)  # an isometry
    rot = np.linalg.lstsq(x, y, rcond=None)[0]
    assert np.isclose(np.linalg.det(rot), 1.0, atol=1e-6)  # no mirror image
    m = y.mean(axis=0)
    assert np.allclose(m / np.linalg.norm(m), [1, 0, 0], atol=1e-9)
    lonlat = sphere_lonlat(x)
    assert np.all(np.abs(lonlat[:, 0]) <= np.pi) and np.all(np.abs(lonlat[:, 1]) <= np.pi / 2)
    assert abs(np.median(lonlat[:, 0])) < 0.1 and abs(np.median(lonlat[:, 1])) < 0.1


def test_python_api_report_is_lazy_and_callable() -> None:
    """``geovae.report`` loads on first use (not with ``import geovae``), is callable as the
    verb, and keeps its signature and numpydoc for ``help``."""
    import subprocess
    import sys

    code = ("import sys, inspect, geovae; assert 'geovae.report' not in sys.modules;"
            "f = geovae.report; import geovae.report.plot; assert geovae.report is f;"
            "assert callable(f) and 'matplotlib' not in sys.modules;"
            "p = inspect.signature(f).parameters; assert list(p)[:2] == ['adata', 'out'];"
            "assert 'reference' in p and 'Sets the following fields' in f.__doc__")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
