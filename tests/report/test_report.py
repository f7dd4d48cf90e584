"""The HTML report: every expected section for a c*GMΔVAE fit with labels, absent sections
left out (never faked), transfer and cluster outputs, self-contained (nothing fetched),
bad input as one line with exit code 2."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from helpers import PBMC, run_cli, sha256

import geovae
from geovae import _keys as K

SECTION = re.compile(r'<section id="([a-z]+)">(.*?)</section>', re.S)
IMAGE = re.compile(r'<img [^>]*src="data:image/png;base64,([^"]+)"')
#: anything that makes a browser fetch: a src/href that is not inline, scripts, stylesheets
EXTERNAL = re.compile(r'(?:src|href)\s*=\s*"(?!data:|#)|<script|<link|@import|url\(', re.I)


def sections(text: str) -> dict[str, str]:
    return dict(SECTION.findall(text))


def pictures(body: str) -> list[bytes]:
    return [base64.b64decode(m) for m in IMAGE.findall(body)]


def check_self_contained(text: str) -> None:
    assert not EXTERNAL.search(text), EXTERNAL.search(text)
    for png in pictures(text):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_cgmvae_fit_report_has_every_section(cg_fit: Path, tmp_path: Path) -> None:
    before = sha256(cg_fit)
    res = run_cli("report", cg_fit, "--out", tmp_path / "r.html")
    assert res.exit_code == 0, res.output
    assert sha256(cg_fit) == before, "the input was written to"
    text = (tmp_path / "r.html").read_text()
    check_self_contained(text)
    found = sections(text)
    assert list(found) == ["run", "umap", "latent", "training", "sizes", "names",
                           "confusion", "volume"]
    for name in ("umap", "latent", "training", "sizes", "volume"):
        assert len(pictures(found[name])) == 1, name
    assert len(pictures(found["confusion"])) == 2  # predicted labels and clusters
    run = found["run"]
    for fact in ("geovae fit", "c*GMΔVAE", "sphere, intrinsic dimension 2", "negative binomial",
                 "700 × 765", "bulk_labels", "cpu", "torch"):
        assert fact in run, fact
    assert "Hammer equal-area" in found["latent"]
    assert "Shaded: the KL warm-up" in found["training"]
    assert "Dashed: epoch" in found["training"]
    info = ad.read_h5ad(cg_fit).uns[K.UNS]
    terms = info["loss_history"]["terms"]
    assert {"reconstruction", "kl_z", "kl_y", "classification"} <= set(terms)
    assert all(len(v) == 5 for v in terms.values())  # one value per epoch (cg_fit: 5)
    assert 0 < info["loss_history"]["warmup_epochs"] <= 5


def test_sections_without_data_are_left_out(cg_fit: Path, tmp_path: Path) -> None:
    """No labels, no volume, no history, a Euclidean latent: those sections are absent
    (not drawn empty), and the Python API leaves the AnnData as it was."""
    a = ad.read_h5ad(cg_fit)
    del a.obs["bulk_labels"], a.obs[K.LABEL], a.obs[K.VOLUME]
    info = a.uns[K.UNS]
    for field in ("loss_history", "label_agreement", "cluster_names"):
        info.pop(field)
    info["params"]["label_key"] = ""
    info["latent"]["geometry"] = "euclidean"
    keys = (set(a.obs), set(a.obsm), set(a.uns), set(info))
    out = geovae.report(a, tmp_path / "r.html")
    assert out == tmp_path / "r.html"
    found = sections(out.read_text())
    assert list(found) == ["run", "umap", "sizes"]
    assert "known labels" not in found["run"]
    assert keys == (set(a.obs), set(a.obsm), set(a.uns), set(info))


def test_hyperbolic_latent_is_drawn_in_the_poincare_disk(cg_fit: Path, tmp_path: Path
                                                         ) -> None:
    a = ad.read_h5ad(cg_fit)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(a.n_obs, 2))
    a.obsm[K.REP] = np.column_stack([np.sqrt(1 + (v ** 2).sum(1)), v])  # on the hyperboloid
    a.uns[K.UNS]["latent"]["geometry"] = "hyperbolic"
    found = sections(geovae.report(a, tmp_path / "h.html").read_text())
    assert "Poincaré disk" in found["latent"] and len(pictures(found["latent"])) == 1


def test_transfer_report_shows_reference_and_query(transferred: Path, tmp_path: Path) -> None:
    """The query output finds OUT_STEM.joint.h5ad beside it; the joint object itself and an
    explicit --reference work too; without any reference the section says so."""
    res = run_cli("report", transferred, "--out", tmp_path / "t.html")
    assert res.exit_code == 0, res.output
    text = (tmp_path / "t.html").read_text()
    check_self_contained(text)
    found = sections(text)
    assert "transfer" in found
    body = found["transfer"]
    assert "unknown-call rate" in body and "Reference and query cells on the same" in body
    assert len(pictures(body)) == 2  # side by side, and the confidence histogram
    rate = ad.read_h5ad(transferred).uns[K.UNS]["transfer"]["fraction_unknown"]
    assert f"{rate:.1%}" in body
    joint = transferred.with_name("q.joint.h5ad")
    res = run_cli("report", joint, "--out", tmp_path / "j.html")
    assert res.exit_code == 0, res.output
    assert "Reference and query cells on the same" in sections(
        (tmp_path / "j.html").read_text())["transfer"]
    alone = tmp_path / "alone" / "q.h5ad"
    alone.parent.mkdir()
    shutil.copy(transferred, alone)
    found = sections(geovae.report(alone, tmp_path / "a.html").read_text())
    assert "not in this file" in found["transfer"]
    assert len(pictures(found["transfer"])) == 1  # the confidence histogram only


def test_cluster_output_without_umap(cg_fit: Path, tmp_path: Path) -> None:
    res = run_cli("cluster", cg_fit, "--out", tmp_path / "c.h5ad", "--label-key",
                  "bulk_labels", "--no-umap", "--quiet")
    assert res.exit_code == 0, res.output
    res = run_cli("report", tmp_path / "c.h5ad")  # default: INPUT_STEM.report.html
    assert res.exit_code == 0, res.output
    found = sections((tmp_path / "c.report.html").read_text())
    assert "umap" not in found and "volume" not in found  # nothing to draw them on
    assert {"latent", "sizes", "confusion"} <= set(found)
    assert "(leiden, resolution 1.0)" in found["run"]
    assert "Mixture components" not in found["sizes"]  # the fit's mixture is not these


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.h5ad", "does not exist"),
    (lambda d: shutil.copy(Path(__file__), d / "x.h5ad"), "is not an .h5ad file"),
    (lambda d: shutil.copy(PBMC, d / "p.h5ad"), "holds no geovae outputs"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, make, message: str) -> None:
    path = Path(make(tmp_path))
    before = sha256(path) if path.exists() else None
    res = run_cli("report", path, "--out", tmp_path / "r.html")
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "r.html").exists()
    assert before is None or sha256(path) == before


def test_bad_output_is_one_line_and_exit_2(cg_fit: Path, tmp_path: Path) -> None:
    for out, message in [(tmp_path / "r.txt", "must end in .html"),
                         (tmp_path / "no" / "r.html", "does not exist")]:
        res = run_cli("report", cg_fit, "--out", out)
        assert res.exit_code == 2 and message in res.stderr, res.output
    res = run_cli("report", cg_fit, "--out", tmp_path / "r.html", "--label-key", "nope")
    assert res.exit_code == 2 and "not a column of obs" in res.stderr, res.output


def test_report_metrics_json(cg_fit: Path, tmp_path: Path) -> None:
    """--metrics-json on report too: the shared schema, its timings and label agreement."""
    import json

    res = run_cli("report", cg_fit, "--out", tmp_path / "r.html", "--metrics-json",
                  tmp_path / "m.json")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["verb"] == "report" and m["command"].startswith("geovae report")
    assert m["outputs"]["out"] == str(tmp_path / "r.html")
    assert m["input"]["n_cells"] == 700 and m["timings"]["plot"] > 0
    assert m["labels"]["label_key"] == "bulk_labels" and 0 <= m["labels"]["ari"] <= 1
    bad = run_cli("report", cg_fit, "--out", tmp_path / "s.html", "--metrics-json",
                  tmp_path / "m.txt")
    assert bad.exit_code == 2 and not (tmp_path / "s.html").exists()
