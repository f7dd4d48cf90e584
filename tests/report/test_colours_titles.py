"""Pictures a lab meeting can read (issue 27, items 3 and 4): clusters and labels in distinct
colour sets, numeric columns on a colour scale (not a legend of hundreds of entries), each
figure titled with the data set, model and agreement with the labels."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers import PBMC, run_cli
from matplotlib.colors import to_rgb

import geovae
from geovae import _keys as K
from geovae.report import sections
from geovae.report.plot import umap_figure


def cells(n: int = 300, n_labels: int = 10, n_clusters: int = 12) -> ad.AnnData:
    rng = np.random.default_rng(0)
    obs = pd.DataFrame({
        "cell_type": pd.Categorical([f"type {i}" for i in rng.integers(0, n_labels, n)]),
        K.CLUSTER: pd.Categorical(rng.integers(0, n_clusters, n).astype(str)),
        "n_counts": rng.integers(1000, 9000, n)}, index=[f"c{i}" for i in range(n)])
    a = ad.AnnData(obs=obs, obsm={K.UMAP: rng.normal(size=(n, 2))})
    a.uns[K.UNS] = {"model": "cgmvae", "latent": {"geometry": "sphere", "dim": 2},
                    "dataset": "pbmc.h5ad",
                    "label_agreement": {"ari": 0.4321, "nmi": 0.5, "label_key": "cell_type"}}
    return a


@pytest.mark.parametrize("n_labels, n_clusters", [(3, 5), (10, 12), (10, 23)])
def test_clusters_and_labels_have_distinct_colours(n_labels: int, n_clusters: int) -> None:
    a = cells(n_labels=n_labels, n_clusters=n_clusters)
    umap_figure(a, ["cell_type"], label_key="cell_type")
    labels = [to_rgb(c) for c in a.uns["cell_type_colors"]]
    clusters = [to_rgb(c) for c in a.uns[f"{K.CLUSTER}_colors"]]
    assert len(labels) == n_labels and len(clusters) == n_clusters
    apart = np.linalg.norm(np.array(clusters)[:, None] - np.array(labels)[None], axis=-1)
    assert apart.min() > 0.15, apart.min()  # no cluster takes a label's colour
    assert len(set(clusters)) == n_clusters  # and the clusters stay distinct


def test_numeric_column_is_drawn_on_a_colour_scale() -> None:
    """626 distinct counts: a colour bar, not a legend of 40 entries and "… 586 more"."""
    a = cells(n=700)
    a.obs["n_counts"] = np.arange(700) % 626 + 1000
    fig = umap_figure(a, ["n_counts"], label_key="cell_type")
    panel = next(ax for ax in fig.axes if ax.get_title() == "N counts")
    assert panel.get_legend() is None
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "n_counts"]
    assert len(bars) == 1  # the colour bar, labelled with the column
    assert "n_counts_colors" not in a.uns
    a.obs["cell_type"] = np.linspace(0, 1, 700)  # a numeric known-label column too
    fig = umap_figure(a, [], label_key="cell_type")
    assert not [ax for ax in fig.axes if ax.get_legend() is not None
                and len(ax.get_legend().get_texts()) > 20]


def test_umap_figure_is_titled_with_data_model_and_agreement() -> None:
    fig = umap_figure(cells(), ["cell_type"], label_key="cell_type")
    assert fig._suptitle.get_text() == "pbmc.h5ad · c*GMΔVAE, sphere latent · ARI 0.43 vs " \
        "cell_type"


def test_every_report_figure_is_titled(monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    titles = []
    real = sections.figure

    def spy(fig, caption):
        titles.append(fig._suptitle.get_text() if fig._suptitle else "")
        return real(fig, caption)

    monkeypatch.setattr(sections, "figure", spy)
    a = cells()
    a.obs[K.LABEL] = a.obs["cell_type"]
    a.uns[K.UNS]["loss_history"] = {"train": np.array([3.0, 2.0]),
                                    "validation": np.array([3.2, 2.5])}
    a.obsm[K.REP] = np.random.default_rng(1).normal(size=(a.n_obs, 3))
    geovae.report(a, tmp_path / "r.html", label_key="cell_type")
    assert len(titles) >= 5  # UMAP, sphere, training, sizes, two confusion matrices
    assert all("pbmc.h5ad · c*GMΔVAE, sphere latent · ARI 0.43 vs cell_type" in t
               for t in titles), titles


def test_fit_png_title_has_the_agreement(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """The PNG written by fit: its title is made after the labels are scored."""
    import geovae.report.plot as plot

    seen = []
    real = plot.save_figure
    monkeypatch.setattr(plot, "save_figure",
                        lambda fig, *a, **k: (seen.append(fig._suptitle.get_text()),
                                              real(fig, *a, **k)))
    res = run_cli("fit", PBMC, "--out", tmp_path / "f.h5ad", "--label-key", "bulk_labels",
                  "--epochs", "1", "--threads", "1", "--quiet")
    assert res.exit_code == 0, res.output
    ari = ad.read_h5ad(tmp_path / "f.h5ad").uns[K.UNS]["label_agreement"]["ari"]
    assert seen == [f"pbmc68k_counts.h5ad · VAE, euclidean latent · ARI {ari:.2f} vs "
                    "bulk_labels"]


def test_joint_png_is_titled_with_both_files_and_the_scores(cg_fit: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import geovae.report.plot as plot

    seen = {}
    real = plot.save_figure
    monkeypatch.setattr(plot, "save_figure",
                        lambda fig, tmp, final, **k: (seen.update({Path(final).name:
                                                                   fig._suptitle.get_text()}),
                                                      real(fig, tmp, final, **k)))
    res = run_cli("transfer", cg_fit.with_name("fit.model"), PBMC, "--out", tmp_path / "q.h5ad",
                  "--reference", cg_fit, "--eval-key", "bulk_labels", "--epochs", "1",
                  "--threads", "1", "--quiet")
    assert res.exit_code == 0, res.output
    acc = ad.read_h5ad(tmp_path / "q.h5ad").uns[K.UNS]["transfer"]["accuracy"]
    title = seen["q.joint.png"]
    assert title.startswith("reference fit.h5ad + query pbmc68k_counts.h5ad · c*GMΔVAE")
    assert title.endswith(f"transferred labels: accuracy {acc:.2f}"), title
