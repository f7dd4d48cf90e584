"""End to end through the CLI on the bundled data: fit, embed, cluster, reload, scanpy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from helpers import DIGITS, PBMC, run_cli, sha256


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fit")
    res = run_cli("fit", PBMC, "--out", d / "pbmc.h5ad", "--model-dir", d / "model",
                  "--label-key", "bulk_labels", "--epochs", "15", "--quiet")
    assert res.exit_code == 0, res.output
    return d


def _is_png(path: Path) -> bool:
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and img.ndim == 3 and img.shape[0] > 50


def test_fit_writes_all_outputs(fitted: Path) -> None:
    a = ad.read_h5ad(fitted / "pbmc.h5ad")
    src = ad.read_h5ad(PBMC)
    assert a.obsm["X_geovae"].shape == (700, 10)
    assert np.isfinite(a.obsm["X_geovae"]).all()
    assert a.obs["geovae_cluster"].dtype == "category"
    assert a.obsm["X_umap"].shape == (700, 2)
    info = a.uns["geovae"]
    for key in ("model", "latent", "likelihood", "seed", "versions", "final_losses", "command"):
        assert key in info, key
    assert info["likelihood"] == "nb" and info["latent"]["geometry"] == "euclidean"
    assert info["command"].startswith("geovae fit")
    # every key the input had is still there, unchanged
    for col in src.obs.columns:
        assert (a.obs[col].astype(str) == src.obs[col].astype(str)).all(), col
    assert (a.X != src.X).nnz == 0
    assert _is_png(fitted / "pbmc.umap.png")
    assert (fitted / "model" / "config.json").is_file()


def test_embed_reproduces_latent(fitted: Path, tmp_path: Path) -> None:
    res = run_cli("embed", fitted / "model", PBMC, "--out", tmp_path / "emb.h5ad", "--quiet")
    assert res.exit_code == 0, res.output
    fit = ad.read_h5ad(fitted / "pbmc.h5ad").obsm["X_geovae"]
    emb = ad.read_h5ad(tmp_path / "emb.h5ad").obsm["X_geovae"]
    np.testing.assert_allclose(emb, fit, rtol=0, atol=1e-5)


def test_embed_matches_genes_by_name(fitted: Path, tmp_path: Path) -> None:
    """Shuffled gene order gives the same latent; dropped genes are reported."""
    a = ad.read_h5ad(PBMC)
    rng = np.random.default_rng(0)
    shuffled = a[:, rng.permutation(a.n_vars)].copy()
    p = tmp_path / "shuffled.h5ad"
    shuffled.write_h5ad(p)
    assert run_cli("embed", fitted / "model", p, "--out", tmp_path / "s.h5ad",
                   "--quiet").exit_code == 0
    np.testing.assert_allclose(ad.read_h5ad(tmp_path / "s.h5ad").obsm["X_geovae"],
                               ad.read_h5ad(fitted / "pbmc.h5ad").obsm["X_geovae"], atol=1e-5)
    partial = a[:, 20:].copy()
    partial.var_names = list(partial.var_names[:-5]) + [f"extra{i}" for i in range(5)]
    p2 = tmp_path / "partial.h5ad"
    partial.write_h5ad(p2)
    res = run_cli("embed", fitted / "model", p2, "--out", tmp_path / "p.h5ad")
    assert res.exit_code == 0, res.output
    assert "25 of the model's 765 features are missing" in res.stderr
    assert "5 input features unknown to the model were ignored" in res.stderr
    assert ad.read_h5ad(tmp_path / "p.h5ad").uns["geovae"]["n_missing_features"] == 25


def test_cluster_command(fitted: Path, tmp_path: Path) -> None:
    res = run_cli("cluster", fitted / "pbmc.h5ad", "--out", tmp_path / "c.h5ad",
                  "--resolution", "0.3", "--quiet")
    assert res.exit_code == 0, res.output
    a = ad.read_h5ad(tmp_path / "c.h5ad")
    before = ad.read_h5ad(fitted / "pbmc.h5ad").obs["geovae_cluster"].nunique()
    assert a.obs["geovae_cluster"].dtype == "category"
    assert 1 < a.obs["geovae_cluster"].nunique() < before  # lower resolution, fewer clusters
    assert a.uns["geovae"]["cluster"]["resolution"] == 0.3
    assert _is_png(tmp_path / "c.umap.png")


def test_model_reloads_in_fresh_process(fitted: Path) -> None:
    code = (
        "import sys, numpy as np, anndata as ad, geovae;"
        f"m = geovae.GeoVAE.load(r'{fitted / 'model'}');"
        f"z = m.get_latent(ad.read_h5ad(r'{PBMC}'));"
        f"ref = ad.read_h5ad(r'{fitted / 'pbmc.h5ad'}').obsm['X_geovae'];"
        "print(float(np.abs(z - ref).max()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-5


def test_scanpy_works_on_output_unchanged(fitted: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    a = ad.read_h5ad(fitted / "pbmc.h5ad")
    sc.pp.neighbors(a, use_rep="X_geovae")
    sc.tl.umap(a)
    fig = sc.pl.umap(a, color="geovae_cluster", show=False, return_fig=True)
    assert fig is not None


def test_default_outputs_beside_input(pbmc_copy: Path) -> None:
    digest = sha256(pbmc_copy)
    res = run_cli("fit", pbmc_copy, "--epochs", "2")
    assert res.exit_code == 0, res.output
    d = pbmc_copy.parent
    assert (d / "pbmc.geovae.h5ad").is_file()
    assert (d / "pbmc.geovae.model" / "weights.pt").is_file()
    assert (d / "pbmc.geovae.umap.png").is_file()
    assert sha256(pbmc_copy) == digest
    assert "wrote" in res.stderr and "pbmc.geovae.h5ad" in res.stderr
    assert res.stderr.count("likelihood auto") == 1 and "likelihood auto → nb" in res.stderr
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_csv_input_with_obs_columns(tmp_path: Path) -> None:
    p = tmp_path / "digits.csv.gz"
    shutil.copy(DIGITS, p)
    res = run_cli("fit", p, "--likelihood", "gaussian", "--label-key", "label", "--epochs", "2",
                  "--quiet")
    assert res.exit_code == 0, res.output
    a = ad.read_h5ad(tmp_path / "digits.geovae.h5ad")
    assert a.shape == (1797, 64) and "label" in a.obs and a.obs_names[0] == "digit0000"
    assert a.uns["geovae"]["likelihood"] == "gaussian"


def test_help_teaches() -> None:
    res = run_cli("fit", "--help")
    assert res.exit_code == 0
    for opt in ("--latent-dim", "--likelihood", "--layer", "--batch-key", "--label-key",
                "--epochs", "--batch-size", "--lr", "--device", "--seed", "--n-top-genes",
                "--quiet", "--model-dir", "--out"):
        assert opt in res.output, opt


def test_cgmvae_through_the_cli(tmp_path: Path) -> None:
    """blobs demo -> fit --model cgmvae -> clusters are the mixture's; cluster --method works."""
    from sklearn.metrics import adjusted_rand_score

    blobs = tmp_path / "blobs.h5ad"
    assert run_cli("blobs", blobs, "--n-cells", "1500", "--quiet").exit_code == 0
    res = run_cli("fit", blobs, "--model", "cgmvae", "--batch-key", "condition",
                  "--likelihood", "gaussian", "--n-clusters", "10", "--latent-dim", "4",
                  "--epochs", "40", "--quiet")
    assert res.exit_code == 0, res.output
    a = ad.read_h5ad(tmp_path / "blobs.geovae.h5ad")
    probs = a.obsm["geovae_cluster_probs"]
    assert probs.shape == (1500, 10)
    np.testing.assert_array_equal(a.obs["geovae_cluster"].astype(int), probs.argmax(1))
    ent = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)
    np.testing.assert_allclose(a.obs["geovae_cluster_entropy"], ent, atol=1e-5)
    assert a.uns["geovae"]["cluster"]["method"] == "mixture"
    assert set(a.uns["geovae"]["elbo_terms"]) >= {"reconstruction", "kl_z", "kl_w", "kl_y",
                                                  "kl_d"}
    # 40 epochs on 1,500 cells, K = 10 an upper bound: blob recovery well above chance
    # (measured 0.94; the full tests are in tests/modules/test_cgmvae.py); a model that
    # ignores the data scores ~0
    assert adjusted_rand_score(a.obs["blob"], a.obs["geovae_cluster"]) > 0.6
    res = run_cli("cluster", tmp_path / "blobs.geovae.h5ad", "--out", tmp_path / "c.h5ad",
                  "--method", "leiden", "--quiet")
    assert res.exit_code == 0, res.output
    assert ad.read_h5ad(tmp_path / "c.h5ad").uns["geovae"]["cluster"]["method"] == "leiden"
    bad = run_cli("fit", blobs, "--n-clusters", "5", "--quiet")
    assert bad.exit_code == 2 and "--n-clusters works with model cgmvae only" in bad.stderr
    bad = run_cli("fit", blobs, "--mixture-weights", "per-cell", "--quiet")
    assert bad.exit_code == 2 and "--mixture-weights works with model cgmvae only" in bad.stderr
    bad = run_cli("fit", blobs, "--no-delete-moves", "--quiet")
    assert bad.exit_code == 2 and "--delete-moves/--no-delete-moves works with model cgmvae " \
        "only" in bad.stderr


def test_merge_rule_reaches_the_mixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--merge-rule goes into the c*GMΔVAE's model_options: the merge moves run with it, the
    run record and the saved model hold it; with a model without a mixture it is one line."""
    from geovae.modules import merging

    blobs = tmp_path / "blobs.h5ad"
    assert run_cli("blobs", blobs, "--n-cells", "300", "--quiet").exit_code == 0
    bad = run_cli("fit", blobs, "--merge-rule", "demp", "--quiet")
    assert bad.exit_code == 2 and bad.stderr.strip().endswith(
        "--merge-rule works with model cgmvae only, not 'vae'"), bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs.h5ad"]
    rules = []
    real = merging.greedy_overlap_merges

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        rules.append(args[5])
        return real(*args, **kwargs)

    monkeypatch.setattr(merging, "greedy_overlap_merges", spy)
    res = run_cli("fit", blobs, "--model", "cgmvae", "--likelihood", "gaussian",
                  "--n-clusters", "4", "--latent-dim", "2", "--epochs", "4", "--no-umap",
                  "--merge-rule", "demp", "--quiet")
    assert res.exit_code == 0, res.output
    assert rules == ["demp"]
    a = ad.read_h5ad(tmp_path / "blobs.geovae.h5ad")
    assert a.uns["geovae"]["params"]["model_options"]["merge_rule"] == "demp"
    config = json.loads((tmp_path / "blobs.geovae.model" / "config.json").read_text())
    assert config["config"]["model_options"]["merge_rule"] == "demp"


def test_version_and_bare_command() -> None:
    import geovae

    res = run_cli("--version")
    assert res.exit_code == 0 and res.output.strip() == f"geovae {geovae.__version__}"
    res = run_cli()
    assert "fit" in res.output and "embed" in res.output and "cluster" in res.output


@pytest.mark.parametrize(("extra", "why", "rule"), [
    (["--latent", "sphere"], "the sphere latent", "demp"),
    (["--mixture-weights", "per-cell"], "--mixture-weights global only", "demp"),
    (["--no-delete-moves"], "--no-delete-moves turns merging off too", "demp"),
    (["--label-key", "blob"], "labels", "demp"),
    (["--latent", "sphere"], "the sphere latent", "elbo"),
])
def test_merge_rule_where_no_merge_runs_is_one_line(tmp_path: Path, extra: list[str],
                                                    why: str, rule: str) -> None:
    """--merge-rule where no merge moves run (a curved latent, labels, per-cell weights,
    delete moves off) is a one-line error before any work, not a recorded rule that never
    ran; the default's value given explicitly too, as for --warm-start."""
    line = _refused_cgmvae_fit(tmp_path, "--merge-rule", rule, *extra)
    assert f"--merge-rule {rule} would have no effect" in line, line
    assert why in line, line


def _refused_cgmvae_fit(tmp_path: Path, *args: str) -> str:
    """The one error line of a c*GMΔVAE fit with ``args`` on 300 blobs that exits with 2
    before writing anything (no traceback)."""
    blobs = tmp_path / "blobs.h5ad"
    assert run_cli("blobs", blobs, "--n-cells", "300", "--quiet").exit_code == 0
    bad = run_cli("fit", blobs, "--model", "cgmvae", "--epochs", "2", *args, "--quiet")
    assert bad.exit_code == 2, bad.output
    errors = [x for x in bad.stderr.splitlines() if "error:" in x]
    assert len(errors) == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs.h5ad"]
    return errors[0]


@pytest.mark.parametrize(("extra", "why"), [
    (["--latent", "sphere"], "the sphere latent: the start clusters z's coordinates, "
                             "--latent euclidean only"),
    (["--latent", "hyperbolic"], "the hyperbolic latent"),
    (["--mixture-weights", "per-cell"], "per-cell weights: --mixture-weights global only"),
    (["--label-key", "blob"], "labels: each labelled component is its label's"),
])
def test_warm_start_where_it_cannot_run_is_one_line(tmp_path: Path, extra: list[str],
                                                   why: str) -> None:
    """The reviewer's F20: --warm-start where the warm start never runs (it fits its GMM in
    z's Euclidean coordinates and sets the global weights of free components) was dropped
    without a word; now a one-line error before any work, naming why."""
    line = _refused_cgmvae_fit(tmp_path, "--warm-start", "0.3", *extra)
    assert "--warm-start 0.3 would have no effect: the warm start runs for an unsupervised " \
        "mixture with global weights on a Euclidean latent only (" in line, line
    assert why in line and line.endswith("); leave it out"), line
    line = _refused_cgmvae_fit(tmp_path, "--mixture-start", "gmm", *extra)
    assert "--mixture-start gmm would have no effect: the warm start runs" in line, line


def test_warm_start_zero_or_default_is_no_error_where_it_cannot_run() -> None:
    """0 (the mixture trained end to end: what runs there) and the default (not given) pass;
    ``hold`` given above 0 where no warm start runs is refused as ``warm_start`` is."""
    from geovae.errors import OptionError
    from geovae.models.cgmvae import check_warm_start_applies

    sphere = {"warm_start": 0.0, "hold": 0.25, "n_labels": 0, "mixture_weights": "global"}
    check_warm_start_applies(sphere, "sphere", {"warm_start"})
    check_warm_start_applies({**sphere, "warm_start": 0.5}, "sphere", set())
    check_warm_start_applies({**sphere, "warm_start": 0.3}, "euclidean", {"warm_start", "hold"})
    with pytest.raises(OptionError, match=r"^`hold` 0.25 would have no effect.*\(labels"):
        check_warm_start_applies({**sphere, "n_labels": 3}, "euclidean", {"warm_start", "hold"})
