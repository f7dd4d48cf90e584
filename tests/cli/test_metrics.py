"""A good citizen of pipelines: --metrics-json (same keys for every command, staged with the
other outputs), the log (what was read and chosen before training; --quiet, --verbose),
label agreement in the run record, --n-neighbors and --no-umap, and a user's UMAP kept."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from helpers import run_cli, sha256
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from geovae import _keys as K

METRICS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
TOP_KEYS = {"schema", "command", "verb", "input", "outputs", "model", "likelihood", "latent",
            "n_features_used", "losses", "heldout_loglik", "clusters", "labels", "transfer",
            "umap", "timings", "device", "threads", "versions", "notes"}
PHASES = {"read", "train", "latent", "cluster_umap", "plot", "write", "total"}


@pytest.fixture(scope="module")
def counts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulated counts with cell types and conditions, and a UMAP of the user's own."""
    from geovae.datasets import simulate_counts

    d = tmp_path_factory.mktemp("counts")
    a = simulate_counts(n_cells=240, n_genes=40, n_types=3, n_conditions=2, seed=0)
    a.obsm["X_umap"] = np.random.default_rng(0).normal(size=(a.n_obs, 2)).astype(np.float32)
    a.uns["umap"] = {"params": {"a": 1.5, "b": 0.5}}
    a.write_h5ad(d / "counts.h5ad")
    return d / "counts.h5ad"


@pytest.fixture(scope="module")
def fitted(counts: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    d = tmp_path_factory.mktemp("fit")
    res = run_cli("fit", counts, "--out", d / "f.h5ad", "--label-key", "cell_type",
                  "--epochs", "3", "--n-neighbors", "10", "--metrics-json", d / "f.json",
                  "--threads", "1", "--umap-epochs", "30")
    assert res.exit_code == 0, res.output
    return d, res


def _metrics(path: Path) -> dict:
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    return json.loads(text)


def test_fit_metrics_json(fitted: tuple[Path, object], counts: Path) -> None:
    d, _ = fitted
    m = _metrics(d / "f.json")
    out = ad.read_h5ad(d / "f.h5ad")
    assert set(m) == TOP_KEYS
    assert m["schema"] == "geovae-metrics/1" and m["verb"] == "fit"
    assert m["command"].startswith("geovae fit") and "--metrics-json" in m["command"]
    assert m["input"] == {"path": str(counts), "format": "h5ad", "n_cells": 240,
                          "n_features": 40, "n_missing_features": None}
    assert m["outputs"]["out"] == str(d / "f.h5ad") and m["outputs"]["metrics_json"] == str(
        d / "f.json")
    assert m["model"] == "vae" and m["likelihood"] == "nb" and m["n_features_used"] == 40
    losses = m["losses"]
    assert losses["epochs_run"] == 3 and len(losses["history"]["train"]) == 3
    assert {"train_loss", "validation_loss", "reconstruction", "kl_z"} <= set(losses["final"])
    for term in ("reconstruction", "kl_z"):  # each term's history, ending in its final value
        assert losses["history"][term][-1] == pytest.approx(losses["final"][term])
    record = out.uns["geovae"]
    assert m["heldout_loglik"]["per_cell"] == pytest.approx(
        float(record["heldout_loglik"]["per_cell"]))
    sizes = m["clusters"]["sizes"]
    counts_out = out.obs["geovae_cluster"].value_counts()
    assert sizes == {str(k): int(v) for k, v in counts_out.items()}
    assert sum(sizes.values()) == 240 and m["clusters"]["n_neighbors"] == 10
    labels = m["labels"]
    truth, clusters = out.obs["cell_type"].astype(str), out.obs["geovae_cluster"].astype(str)
    assert labels["ari"] == pytest.approx(adjusted_rand_score(truth, clusters))
    assert labels["nmi"] == pytest.approx(normalized_mutual_info_score(truth, clusters))
    assert labels["label_key"] == "cell_type" and labels["n_cells"] == 240
    assert m["transfer"] is None
    assert set(m["timings"]) == PHASES and m["timings"]["latent"] is None
    assert all(m["timings"][p] >= 0 for p in PHASES - {"latent"})
    assert m["timings"]["total"] >= m["timings"]["train"] + m["timings"]["cluster_umap"]
    assert m["device"] == "cpu" and m["threads"] == 1
    assert m["versions"]["geovae"] and m["versions"]["scanpy"]
    assert m["umap"]["computed"] is True and m["umap"]["n_epochs"] == 30


def test_label_agreement_in_the_record_and_the_log(fitted: tuple[Path, object]) -> None:
    d, res = fitted
    record = ad.read_h5ad(d / "f.h5ad").uns["geovae"]
    agreement = _metrics(d / "f.json")["labels"]
    assert set(K.RECORD_FIELDS) >= {"label_agreement", "umap"}
    assert record["label_agreement"]["ari"] == pytest.approx(agreement["ari"])
    assert record["label_agreement"]["nmi"] == pytest.approx(agreement["nmi"])
    assert re.search(r"clusters vs cell_type: ARI -?\d\.\d{3}, NMI \d\.\d{3}", res.stderr)


def test_the_log_says_what_was_read_and_chosen_before_training(
        fitted: tuple[Path, object]) -> None:
    _, res = fitted
    err = res.stderr
    assert "240 cells × 40 features" in err
    assert "likelihood auto → nb (non-negative integer counts)" in err
    assert err.count("likelihood auto") == 1 and "->" not in err  # said once, one arrow
    assert "all 40 features" in err and "labels: cell_type (3 labels)" in err
    assert "cpu, 1 thread, up to 3 epochs" in err
    first_epoch = err.index("epoch 1/3")
    for line in ("read ", "model: vae, latent euclidean (d=10)", "training: "):
        assert err.index(line) < first_epoch, line
    assert err.index("epoch 1/3") < err.index("wrote ")
    assert re.search(r"^\d\d:\d\d:\d\d read ", err, re.M)  # timestamped lines
    assert "done in" in err and "train" in err


def test_every_long_phase_says_when_it_starts(fitted: tuple[Path, object]) -> None:
    err = fitted[1].stderr
    phases = ["held-out log-likelihood (IWAE): 20 importance samples",
              "posterior predictive check on up to", "kNN graph: 10 neighbours of 240 cells",
              "Leiden clustering (resolution 1)", "UMAP of 240 cells", "plotting f.umap.png",
              "writing "]
    at = [err.index(p) for p in phases]  # each one there, in the order the run goes
    assert at == sorted(at) and err.index("epoch 1/3") < at[0]
    for p in phases:
        assert re.search(rf"^\d\d:\d\d:\d\d {re.escape(p)}", err, re.M), p
    assert err.index("writing ") < err.index("done in")
    # the estimate with the precision it has: 5% of 240 cells held out of training
    assert re.search(r"held-out log-likelihood of 12 test cells: -?[\d.]+ ± [\d.]+ nats per "
                     r"cell \(SE over cells; 20 importance samples", err), err


def test_the_users_umap_is_kept(fitted: tuple[Path, object], counts: Path) -> None:
    d, res = fitted
    src, out = ad.read_h5ad(counts), ad.read_h5ad(d / "f.h5ad")
    np.testing.assert_array_equal(out.obsm["X_umap"], src.obsm["X_umap"])
    assert out.uns["umap"]["params"]["a"] == 1.5
    assert out.obsm[K.UMAP_GEOVAE].shape == (240, 2)
    assert not np.array_equal(out.obsm[K.UMAP_GEOVAE], src.obsm["X_umap"])
    assert K.UMAP_PARAMS in out.uns
    assert list(out.uns["geovae"]["umap"]["obsm"]) == [K.UMAP_GEOVAE]
    assert "geovae_umap" in res.stderr and "kept" in res.stderr


def test_geovae_umap_is_also_x_umap_when_free_and_replaced_by_the_next_run(
        fitted: tuple[Path, object], tmp_path: Path) -> None:
    d, _ = fitted
    mine = ad.read_h5ad(d / "f.h5ad")
    del mine.obsm["X_umap"], mine.uns["umap"]
    mine.write_h5ad(tmp_path / "no_umap.h5ad")
    assert run_cli("cluster", tmp_path / "no_umap.h5ad", "--out", tmp_path / "c1.h5ad",
                   "--quiet").exit_code == 0
    c1 = ad.read_h5ad(tmp_path / "c1.h5ad")
    np.testing.assert_array_equal(c1.obsm["X_umap"], c1.obsm[K.UMAP_GEOVAE])
    assert "umap" in c1.uns and K.UMAP_PARAMS in c1.uns
    # a later run on geovae's own output replaces geovae's copy (it is not the user's)
    res = run_cli("cluster", tmp_path / "c1.h5ad", "--out", tmp_path / "c2.h5ad", "--seed", "3",
                  "--n-neighbors", "5", "--quiet")
    assert res.exit_code == 0, res.output
    c2 = ad.read_h5ad(tmp_path / "c2.h5ad")
    np.testing.assert_array_equal(c2.obsm["X_umap"], c2.obsm[K.UMAP_GEOVAE])
    assert not np.array_equal(c2.obsm["X_umap"], c1.obsm["X_umap"])


@pytest.mark.parametrize("users_umap", [True, False])
def test_cluster_command_and_python_cluster_write_the_same_keys(
        fitted: tuple[Path, object], tmp_path: Path, users_umap: bool) -> None:
    """One UMAP key policy (geovae.tools.umap_keys): `geovae cluster` and `geovae.cluster`
    write the same keys, with and without a UMAP of the user's own in X_umap, and the same
    values (same seed, same graph)."""
    import geovae

    d, _ = fitted
    given = ad.read_h5ad(d / "f.h5ad")  # holds the user's X_umap and geovae's X_geovae_umap
    if not users_umap:
        del given.obsm["X_umap"], given.uns["umap"]
    given.write_h5ad(tmp_path / "in.h5ad")
    res = run_cli("cluster", tmp_path / "in.h5ad", "--out", tmp_path / "c.h5ad", "--seed", "2",
                  "--n-neighbors", "8", "--quiet")
    assert res.exit_code == 0, res.output
    cli = ad.read_h5ad(tmp_path / "c.h5ad")
    python = geovae.cluster(ad.read_h5ad(tmp_path / "in.h5ad"), seed=2, n_neighbors=8)

    def keys(a: ad.AnnData) -> dict[str, set[str]]:
        return {"obs": set(a.obs), "obsm": set(a.obsm), "obsp": set(a.obsp),
                "uns": {k for k in a.uns if not k.endswith("_colors")},  # the CLI's plot
                "record": set(a.uns["geovae"]) - {"command"}}  # the command line itself

    assert keys(cli) == keys(python)
    assert K.UMAP_GEOVAE in python.obsm and K.UMAP_PARAMS in python.uns
    for key in (K.UMAP, K.UMAP_GEOVAE):
        np.testing.assert_array_equal(cli.obsm[key], python.obsm[key])
    if users_umap:  # the user's UMAP stays, in both
        np.testing.assert_array_equal(python.obsm[K.UMAP], given.obsm["X_umap"])
        assert python.uns["umap"]["params"]["a"] == 1.5
    else:  # geovae's UMAP is also X_umap where that is free, in both
        np.testing.assert_array_equal(python.obsm[K.UMAP], python.obsm[K.UMAP_GEOVAE])
    assert list(cli.uns["geovae"]["umap"]["obsm"]) == list(python.uns["geovae"]["umap"]["obsm"])


def test_cluster_no_umap_label_key_and_metrics(fitted: tuple[Path, object],
                                               tmp_path: Path) -> None:
    d, _ = fitted
    res = run_cli("cluster", d / "f.h5ad", "--out", tmp_path / "c.h5ad", "--no-umap",
                  "--label-key", "condition", "--n-neighbors", "7", "--metrics-json",
                  tmp_path / "c.json")
    assert res.exit_code == 0, res.output
    assert "no UMAP and no plot (--no-umap)" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5ad", "c.json"]  # no plot
    c = ad.read_h5ad(tmp_path / "c.h5ad")
    src = ad.read_h5ad(d / "f.h5ad")
    assert K.UMAP_GEOVAE not in c.obsm  # the input's geovae UMAP was of another graph
    np.testing.assert_array_equal(c.obsm["X_umap"], src.obsm["X_umap"])  # the user's stays
    assert c.uns["geovae"]["cluster"]["n_neighbors"] == 7
    m = _metrics(tmp_path / "c.json")
    assert set(m) == TOP_KEYS and m["verb"] == "cluster"
    assert m["losses"] is None and m["model"] is None and m["heldout_loglik"] is None
    assert m["timings"]["plot"] is None and m["timings"]["train"] is None
    assert m["umap"]["computed"] is False
    assert m["labels"]["label_key"] == "condition"
    assert c.uns["geovae"]["label_agreement"]["label_key"] == "condition"


def test_embed_metrics_and_model_labels(fitted: tuple[Path, object], counts: Path,
                                        tmp_path: Path) -> None:
    d, _ = fitted
    res = run_cli("embed", d / "f.model", counts, "--out", tmp_path / "e.h5ad", "--no-umap",
                  "--metrics-json", tmp_path / "e.json", "--label-key", "cell_type",
                  "--quiet")
    assert res.exit_code == 0, res.output
    m = _metrics(tmp_path / "e.json")
    assert set(m) == TOP_KEYS and m["verb"] == "embed"
    assert m["input"]["n_missing_features"] == 0 and m["losses"] is None
    assert m["timings"]["latent"] is not None and m["timings"]["train"] is None
    assert m["labels"]["label_key"] == "cell_type" and m["device"] == "cpu"


@pytest.mark.parametrize(("args", "mention"), [
    (["--metrics-json", "m.txt"], "must end in .json"),
    (["--metrics-json", "counts.h5ad"], "never overwrites its input"),
    (["--metrics-json", "o.h5ad"], "same path"),
    (["--no-umap", "--plot", "p.png"], "needs the UMAP"),
    (["--n-neighbors", "1"], "--n-neighbors must be"),
    (["--quiet", "--verbose"], "contradict"),
    (["--device", "gpu"], "unknown --device 'gpu'"),
])
def test_pipeline_options_checked_before_reading(tmp_path: Path, args: list[str],
                                                 mention: str) -> None:
    broken = tmp_path / "counts.h5ad"  # unreadable: the checks come first
    broken.write_text("not hdf5")
    args = [str(tmp_path / a) if a.endswith((".txt", ".h5ad", ".png")) else a for a in args]
    before = {p.name: sha256(p) for p in tmp_path.iterdir()}
    res = run_cli("fit", broken, "--out", tmp_path / "o.h5ad", *args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and mention.lower() in err.lower(), err
    assert {p.name: sha256(p) for p in tmp_path.iterdir()} == before


def test_failed_run_leaves_no_metrics(counts: Path, tmp_path: Path, monkeypatch) -> None:
    def boom(self, path, *a, **k):  # noqa: ANN001
        raise RuntimeError("disk full")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", boom)
    res = run_cli("fit", counts, "--out", tmp_path / "o.h5ad", "--epochs", "1", "--no-umap",
                  "--metrics-json", tmp_path / "m.json", "--quiet")
    assert res.exit_code == 1
    assert list(tmp_path.iterdir()) == []  # staged together: all outputs or none


def test_quiet_keeps_warnings_verbose_adds_debug(counts: Path, tmp_path: Path) -> None:
    a = ad.read_h5ad(counts)
    a.layers["counts"] = a.X.copy()
    a.X = np.log1p(a.X)
    a.write_h5ad(tmp_path / "lognorm.h5ad")
    res = run_cli("fit", tmp_path / "lognorm.h5ad", "--out", tmp_path / "q.h5ad", "--epochs",
                  "1", "--no-umap", "--quiet")
    assert res.exit_code == 0, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "warning: X looks log-normalised" in lines[0], res.stderr
    assert "add --layer counts" in lines[0]
    record_notes = list(ad.read_h5ad(tmp_path / "q.h5ad").uns["geovae"]["notes"])
    assert any("--layer counts" in n for n in record_notes)
    res = run_cli("fit", tmp_path / "lognorm.h5ad", "--out", tmp_path / "v.h5ad", "--epochs",
                  "1", "--no-umap", "--layer", "counts", "--verbose")
    assert res.exit_code == 0, res.output
    assert "debug: clustering obsm['X_geovae']" in res.stderr
    assert "log-normalised" not in res.stderr  # the counts are used: no hint


def test_transfer_metrics(counts: Path, tmp_path: Path) -> None:
    a = ad.read_h5ad(counts)
    ref, query = a[a.obs["condition"] == a.obs["condition"].cat.categories[0]].copy(), \
        a[a.obs["condition"] == a.obs["condition"].cat.categories[1]].copy()
    ref.write_h5ad(tmp_path / "ref.h5ad")
    query.write_h5ad(tmp_path / "query.h5ad")
    assert run_cli("fit", tmp_path / "ref.h5ad", "--out", tmp_path / "ref.out.h5ad",
                   "--batch-key", "condition", "--label-key", "cell_type", "--epochs", "3",
                   "--quiet").exit_code == 0
    res = run_cli("transfer", tmp_path / "ref.out.model", tmp_path / "query.h5ad", "--out",
                  tmp_path / "q.h5ad", "--eval-key", "cell_type", "--epochs", "2",
                  "--no-umap", "--metrics-json", tmp_path / "q.json", "--quiet")
    assert res.exit_code == 0, res.output
    m = _metrics(tmp_path / "q.json")
    assert set(m) == TOP_KEYS and m["verb"] == "transfer"
    info = ad.read_h5ad(tmp_path / "q.h5ad").uns["geovae"]["transfer"]
    for key in ("accuracy", "macro_f1", "fraction_unknown"):
        assert m["transfer"][key] == pytest.approx(float(info[key])), key
    assert m["labels"]["label_key"] == "cell_type" and "accuracy" in m["labels"]
    assert m["outputs"]["model_dir"] == str(tmp_path / "q.model")


def test_docs_page_documents_every_metrics_key() -> None:
    section = METRICS_PAGE.read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)`", section, re.M))
    assert TOP_KEYS <= documented, TOP_KEYS - documented


def test_unknown_label_key_is_named_before_any_work(fitted: tuple[Path, object],
                                                   tmp_path: Path) -> None:
    d, _ = fitted
    res = run_cli("cluster", d / "f.h5ad", "--out", tmp_path / "c.h5ad", "--label-key",
                  "nosuch", "--quiet")
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert "--label-key 'nosuch' is not a column of obs" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_log_file_shows_the_choices_while_training_runs(counts: Path, tmp_path: Path) -> None:
    """stderr redirected to a file (a workflow's log): the lines are there before the end."""
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "run.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "geovae", "fit", str(counts), "--out",
                                 str(tmp_path / "o.h5ad"), "--epochs", "5000", "--threads",
                                 "1"], stdout=subprocess.DEVNULL, stderr=fh)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and "epoch 1/" not in \
                log.read_text():
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()  # still training
        text = log.read_text()
        assert "240 cells × 40 features" in text and "training: cpu, 1 thread" in text, text
        assert "up to 5000 epochs" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert not (tmp_path / "o.h5ad").exists()
