"""The report says what a run did (issue 27, item 5): what a transfer trained, the whole
chain of commands, the query mapping's curves named so, the mixing scores, legends a slide
can show, a heading over the notes, and no legend entry for a line a panel does not draw."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
from helpers import run_cli

import geovae
from geovae import _keys as K
from geovae.report.figures import curves_figure

SECTION = re.compile(r'<section id="([a-z]+)">(.*?)</section>', re.S)
WIDTH = re.compile(r'<img [^>]*width="(\d+)"')
#: CSS pixels of the report's column in a 1,400-px-wide window (main: 32 px padding each side)
COLUMN_PX = 1400 - 2 * 32


def sections(path: Path) -> dict[str, str]:
    return dict(SECTION.findall(path.read_text()))


def with_transfer(transferred: Path, **fields) -> ad.AnnData:
    """The transfer output with fields of its record's ``transfer`` entry replaced."""
    a = ad.read_h5ad(transferred)
    a.uns[K.UNS]["transfer"].update(fields)
    return a


def test_freeze_all_says_only_the_new_columns_trained(transferred: Path, tmp_path: Path
                                                      ) -> None:
    a = with_transfer(transferred, freeze="all", n_trainable_weights=256, epochs_run=5,
                      new_categories={"stim": np.array(["STIM"], dtype=object)})
    body = sections(geovae.report(a, tmp_path / "a.html"))["transfer"]
    assert "<th>weights trained</th><td>all</td>" not in body
    assert ("only the new covariate categories&#x27; columns (stim: STIM), 256 weights; every "
            "weight of the reference kept (--freeze all)") in body
    a = with_transfer(transferred, freeze="none", n_trainable_weights=9000)
    body = sections(geovae.report(a, tmp_path / "n.html"))["transfer"]
    assert "every weight, 9,000 weights (--freeze none)" in body
    a = with_transfer(transferred, freeze="all", n_trainable_weights=0)
    body = sections(geovae.report(a, tmp_path / "z.html"))["transfer"]
    assert "none: the reference&#x27;s weights as they are" in body


def test_command_row_shows_fit_transfer_cluster_chain(transferred: Path, tmp_path: Path
                                                      ) -> None:
    """fit → transfer (--reference: the chain goes on from the reference's) → cluster."""
    res = run_cli("cluster", transferred, "--out", tmp_path / "c.h5ad", "--quiet")
    assert res.exit_code == 0, res.output
    chain = list(ad.read_h5ad(tmp_path / "c.h5ad").uns[K.UNS]["commands"])
    assert [c.split()[:2] for c in chain] == [["geovae", "fit"], ["geovae", "transfer"],
                                              ["geovae", "cluster"]], chain
    run = sections(geovae.report(tmp_path / "c.h5ad", tmp_path / "c.html"))["run"]
    assert "<th>commands</th>" in run
    assert all(f"{i}. geovae {verb}" in run
               for i, verb in enumerate(("fit", "transfer", "cluster"), 1)), run


def test_transfer_curves_are_labelled_as_the_query_mapping(transferred: Path, tmp_path: Path
                                                           ) -> None:
    a = with_transfer(transferred, epochs_run=3)
    a.uns[K.UNS]["loss_history"] = {"train": np.array([3.0, 2.0, 1.5]),
                                    "validation": np.array([3.1, 2.2, 1.7])}
    out = geovae.report(a, tmp_path / "q.html")
    assert "<h2>Training of the query mapping</h2>" in out.read_text()
    assert "The query mapping (geovae transfer)" in sections(out)["training"]
    a = with_transfer(transferred, epochs_run=0)  # nothing trained: the reference's curves
    a.uns[K.UNS]["loss_history"] = {"train": np.array([3.0, 2.0, 1.5])}
    out = geovae.report(a, tmp_path / "r.html")
    assert "<h2>Training of the reference model</h2>" in out.read_text()


def test_mixing_scores_in_the_record_are_shown(transferred: Path, tmp_path: Path) -> None:
    mix = {"ilisi": 0.5328, "ilisi_per_label": 0.4201, "kbet": 0.228, "batch_asw": 0.6492,
           "label_asw": 0.5609, "labels": "eval_key", "n_cells": 3000}
    body = sections(geovae.report(with_transfer(transferred, mixing=mix),
                                  tmp_path / "m.html"))["transfer"]
    for name, value in (("iLISI, query with reference", "0.533"),
                        ("iLISI within labels", "0.420"),
                        ("kBET acceptance within labels", "0.228")):
        assert re.search(rf"<th>{re.escape(name)}[^<]*</th><td>{value}</td>", body), name


def test_every_picture_fits_the_column_of_a_1400_px_window(transferred: Path,
                                                           tmp_path: Path) -> None:
    """A wider picture is shrunk by the browser, its 10-point legend text with it (the
    reference/query figure's was ~7 px); the joint object draws reference, query and the
    query's known labels."""
    text = geovae.report(transferred.with_name("q.joint.h5ad"), tmp_path / "j.html"
                         ).read_text()
    text += geovae.report(transferred, tmp_path / "t.html",
                          reference=transferred.with_name("q.joint.h5ad")).read_text()
    widths = [int(w) for w in WIDTH.findall(text)]
    assert len(widths) >= 8
    assert max(widths) <= COLUMN_PX, widths


def test_notes_have_a_heading(cg_fit: Path, tmp_path: Path) -> None:
    a = ad.read_h5ad(cg_fit)
    a.uns[K.UNS]["notes"] = np.array(["counts found in layer 'counts'"], dtype=object)
    run = sections(geovae.report(a, tmp_path / "n.html"))["run"]
    assert re.search(r"<h3>Notes</h3>\s*<ul class=\"notes\"><li>counts found", run), run


def test_legend_names_only_lines_its_panels_draw() -> None:
    """Validation is recorded for the -ELBO only: the legend over all panels does not list
    it; the -ELBO panel names it itself."""
    history = {"train": np.linspace(5, 3, 6), "validation": np.linspace(5.2, 3.3, 6),
               "terms": {"reconstruction": np.linspace(4, 2.5, 6),
                         "kl_z": np.linspace(1, 0.5, 6)}}
    fig = curves_figure(history, best_epoch=5)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels][0] == "−ELBO" and len(panels) == 3
    shared = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert shared and "validation" not in shared
    for ax in panels:
        drawn = {line.get_label() for line in ax.get_lines()}
        assert set(shared) - {"KL warm-up"} <= drawn, (ax.get_title(), shared, drawn)
    own = panels[0].get_legend()
    assert own is not None and [t.get_text() for t in own.get_texts()] == ["validation"]


def test_epochs_row_separates_the_reference_fit_and_the_query_mapping(transferred: Path,
                                                                      tmp_path: Path) -> None:
    a = with_transfer(transferred, epochs_run=5)
    a.uns[K.UNS]["params"].update(epochs_run=15, epochs=15)
    a.uns[K.UNS]["best_epoch"] = 5
    run = sections(geovae.report(a, tmp_path / "e.html"))["run"]
    assert "<th>epochs</th><td>reference fit 15 of at most 15; query mapping 5; weights of " \
        "epoch 5 kept</td>" in run, run
