"""``geovae report`` as a file job: a geovae output (.h5ad) in, one self-contained HTML
report out (written atomically; the input is only read)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from geovae import _keys as K
from geovae.errors import InputError
from geovae.io.read import input_stem

log = logging.getLogger("geovae.runs")


def report_path(input_path: Path, out: str | os.PathLike | None) -> Path:
    """``out``, else INPUT_STEM.report.html beside the input."""
    return Path(out) if out else input_path.with_name(f"{input_stem(input_path)}.report.html")


def run_report(input_path: str | os.PathLike, out: str | os.PathLike | None = None,
               reference: str | os.PathLike | None = None,
               label_key: str | None = None, metrics_json: str | os.PathLike | None = None,
               command: str = "") -> Path:
    """Write the HTML report of a fit, embed, cluster or transfer output. For a transfer
    output the reference cells come from ``reference`` (the reference's fit output or the
    joint object), else from OUT_STEM.joint.h5ad beside the input when it is there. With
    ``metrics_json``, also the metrics JSON (same schema as the other commands: timings,
    cluster sizes, label agreement, versions). The outputs go through the same plan (checked
    before reading), lock and commit as every other command's."""
    from geovae.io.write import OutputSet
    from geovae.report.html import build_html, read_output
    from geovae.runs.metrics import Timings, write_json
    from geovae.runs.plan import OutputPlan

    timings = Timings()
    p = Path(input_path)
    if not p.exists():
        raise InputError(f"input file '{p}' does not exist: check the path")
    if reference is not None and not Path(reference).exists():
        raise InputError(f"{{reference}} '{reference}' does not exist: check the path")
    joint = p.with_name(f"{input_stem(p)}.joint.h5ad")
    inputs = [p, *([Path(reference)] if reference is not None else []),
              *([joint] if joint.is_file() else [])]
    plan = OutputPlan(inputs, report_path(p, out),
                      metrics=Path(metrics_json) if metrics_json is not None else None,
                      out_suffixes=(".html", ".htm"))
    plan.check()
    out_p = plan.out
    with plan.lock():
        with timings.phase("read"):
            adata = read_output(p)
            ref = read_output(reference) if reference is not None else None
            info = adata.uns.get(K.UNS)
            if ref is None and isinstance(info, dict) and "transfer" in info \
                    and joint.is_file():
                log.info(f"reference cells from {joint}")
                ref = read_output(joint)
        with timings.phase("plot"):
            text = build_html(adata, reference=ref, label_key=label_key, name=p.name)
        with OutputSet() as outputs:  # the report and its metrics: both or neither
            outputs.stage(out_p).write_text(text, encoding="utf-8")
            if plan.metrics is not None:
                write_json(_metrics(adata, p, out_p, plan.metrics, label_key, command,
                                    timings), outputs.stage(plan.metrics))
            outputs.commit()
    return out_p


def _metrics(adata: object, input_path: Path, out_p: Path, metrics: Path,
             label_key: str | None, command: str, timings: object) -> dict:
    """The report's metrics (the other commands' schema)."""
    from types import SimpleNamespace

    from geovae.runs.metrics import build, label_agreement

    info = adata.uns.get(K.UNS, {})
    params = info.get("params", {}) if isinstance(info, dict) else {}
    key = label_key or (params.get("label_key") if isinstance(params, dict) else None) or None
    agreement = label_agreement(adata, key) if key and key in adata.obs else None
    result = SimpleNamespace(out=str(out_p), plot=None, model_dir=None, metrics=str(metrics),
                             messages=[])
    return build("report", adata, command=command, input_path=input_path, result=result,
                 timings=timings, input_shape=tuple(adata.shape), input_format="h5ad",
                 agreement=agreement)


__all__ = ["run_report"]
