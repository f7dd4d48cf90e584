"""Details a new user meets: the likelihood note said once, log-normalised X without counts
named as such, singular and plural counts in the log, the KL warm-up in whole epochs, the kNN
graph where scanpy looks by default, and the Snakemake example's results/ ignored by git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from helpers import run_cli

import geovae
from geovae.report.sections import epochs_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lognorm_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    """fit on log-normalised X with no counts anywhere and a one-category covariate."""
    from geovae.datasets import simulate_counts

    d = tmp_path_factory.mktemp("lognorm")
    a = simulate_counts(n_cells=200, n_genes=30, n_types=3, n_conditions=1, seed=0)
    X = np.asarray(a.X.todense() if sp.issparse(a.X) else a.X, dtype=np.float64)
    a.X = np.log1p(X / np.maximum(X.sum(1, keepdims=True), 1) * 1e4).astype(np.float32)
    a.obs["stim"] = "ctrl"
    a.write_h5ad(d / "lognorm.h5ad")
    res = run_cli("fit", d / "lognorm.h5ad", "--batch-key", "stim", "--label-key", "cell_type",
                  "--epochs", "2", "--no-umap", "--threads", "1")
    assert res.exit_code == 0, res.output
    return res.stderr


def test_log_normalised_x_without_counts_says_counts_are_preferred(lognorm_run: str) -> None:
    line = next(x for x in lognorm_run.splitlines() if "no layer or .raw holds counts" in x)
    assert "warning:" in line and "X looks log-normalised" in line
    assert "layers['counts']" in line and ".raw" in line and "--layer" in line


def test_one_category_is_singular_and_the_likelihood_is_said_once(lognorm_run: str) -> None:
    assert "covariates: stim (1 category)" in lognorm_run
    assert "categories)" not in lognorm_run.split("covariates:")[1].splitlines()[0]
    assert "labels: cell_type (3 labels)" in lognorm_run
    assert lognorm_run.count("likelihood auto") == 1, lognorm_run
    assert "likelihood auto → gaussian" in lognorm_run and "->" not in lognorm_run


@pytest.mark.parametrize(("epochs", "text"), [(100.0, "100 epochs"), (1.0, "1 epoch"),
                                              (2.5, "2.5 epochs"), (37.04, "37 epochs")])
def test_kl_warmup_in_epochs_reads_naturally(epochs: float, text: str) -> None:
    assert epochs_text(epochs) == text


def test_the_report_says_the_warmup_in_whole_epochs() -> None:
    from geovae.report.sections import Context, training_section

    history = {"train": np.linspace(3, 1, 150), "val": np.linspace(3, 1, 150),
               "warmup_epochs": 100.0}
    section = training_section(Context(adata=None, info={"loss_history": history,
                                                         "best_epoch": 150}))
    html = str(section)
    assert "KL warm-up (100 epochs)" in html and "100.0 epochs" not in html


def _latent(n: int = 200) -> ad.AnnData:
    rng = np.random.default_rng(0)
    a = ad.AnnData(np.zeros((n, 3), np.float32))
    a.obsm["X_geovae"] = np.concatenate([rng.normal(0, 1, (n // 2, 4)),
                                         rng.normal(6, 1, (n - n // 2, 4))]).astype(np.float32)
    return a


def test_scanpy_finds_the_graph_when_the_input_had_none() -> None:
    import scanpy as sc

    a = _latent()
    geovae.cluster(a, umap=False)
    assert a.uns["neighbors"]["geovae"] is True
    assert (a.obsp["connectivities"] != a.obsp["geovae_neighbors_connectivities"]).nnz == 0
    assert (a.obsp["distances"] != a.obsp["geovae_neighbors_distances"]).nnz == 0
    sc.tl.leiden(a, key_added="mine", flavor="igraph", n_iterations=2, directed=False)
    assert a.obs["mine"].nunique() >= 2
    geovae.cluster(a, umap=False, n_neighbors=7)  # geovae's own copy is replaced
    assert a.uns["neighbors"]["params"]["n_neighbors"] == 7


def test_a_users_own_graph_is_never_replaced() -> None:
    import scanpy as sc

    a = _latent()
    sc.pp.neighbors(a, use_rep="X_geovae", n_neighbors=5)
    before = a.obsp["connectivities"].copy(), dict(a.uns["neighbors"])
    geovae.cluster(a, umap=False)
    assert (a.obsp["connectivities"] != before[0]).nnz == 0
    assert a.uns["neighbors"]["params"] == before[1]["params"]
    assert "geovae" not in a.uns["neighbors"]


def test_snakemake_results_at_the_repository_root_are_ignored() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("results/metrics/fit.json", "workflows/snakemake/results/logs/fit.log"):
        res = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", path])
        assert res.returncode == 0, path


def test_a_users_graph_left_on_disk_by_a_backed_read_is_kept(tmp_path: Path) -> None:
    from geovae.io.backed import read_backed

    a = _latent()
    a.obsp["connectivities"] = sp.identity(a.n_obs, format="csr")
    a.write_h5ad(tmp_path / "a.h5ad")
    b = read_backed(tmp_path / "a.h5ad")
    assert "connectivities" not in b.obsp  # on disk only
    geovae.cluster(b, umap=False)
    assert "neighbors" not in b.uns and "connectivities" not in b.obsp


def test_marker_genes_say_when_they_start(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from geovae.datasets import simulate_counts
    from geovae.tools.markers import rank_markers

    a = simulate_counts(n_cells=120, n_genes=20, n_types=2, n_conditions=1, seed=0)
    a.obs["geovae_cluster"] = a.obs["cell_type"].astype(str).astype("category")
    logger = logging.getLogger("geovae")  # the CLI's tests may have stopped propagation
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="geovae"):
            assert rank_markers(a) is not None
    finally:
        logger.removeHandler(caplog.handler)
    assert "marker genes: scanpy's rank_genes_groups (t-test) of 2 clusters on 120 cells" \
        in caplog.text
