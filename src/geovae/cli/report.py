"""``geovae report``: the HTML report of a geovae output (registered on the app by
`geovae.cli`; this module does not import it)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from geovae.cli._common import MetricsJson, _command_line, argument, guarded

log = logging.getLogger("geovae.cli")


@guarded
def report(
    ctx: typer.Context,
    input: Annotated[Path, argument("OUT.h5ad", "An .h5ad written by geovae fit, embed, cluster "
                                                "or transfer (or a transfer's "
                                                "OUT_STEM.joint.h5ad).")],
    out: Annotated[Path | None, typer.Option(
        help="The report, one self-contained .html (default: INPUT_STEM.report.html beside "
             "the input).")] = None,
    reference: Annotated[Path | None, typer.Option(
        help="Transfer outputs: the reference's fit output .h5ad (or the joint object), to "
             "draw reference and query side by side (default: OUT_STEM.joint.h5ad beside a "
             "transfer output, when there).")] = None,
    label_key: Annotated[str | None, typer.Option(
        help="obs column of known labels for the panels and confusion matrices (default: "
             "the run's --label-key, or transfer's --eval-key).", metavar="<column>")] = None,
    metrics_json: MetricsJson = None,
) -> None:
    """Write one self-contained HTML report of a geovae output.

    UMAPs by cluster, label and batch; the latent in its own geometry; training curves;
    cluster sizes; confusion matrices against known labels; reference vs query."""
    from geovae.runs.report import run_report

    path = run_report(input, out=out, reference=reference, label_key=label_key,
                      metrics_json=metrics_json, command=_command_line(ctx))
    log.info("wrote %s", path)
