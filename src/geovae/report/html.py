"""The HTML report of a geovae output: one self-contained file (pictures inline as base64
PNG, styles inline, no script, nothing fetched from the network)."""

from __future__ import annotations

import datetime as dt
import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from geovae import _keys as K
from geovae.errors import InputError
from geovae.report import sections as S
from geovae.report.names import names_section
from geovae.report.sections import Context, Section, table

#: the report's sections, in order
SECTIONS = (S.umap_section, S.latent_section, S.training_section, S.sizes_section,
            names_section, S.confusion_section, S.volume_section, S.transfer_section)

MODEL_NAMES = {"vae": "VAE", "cgmvae": "c*GMΔVAE (Gaussian-mixture VAE, Dirichlet prior)"}
LIKELIHOODS = {"nb": "negative binomial", "zinb": "zero-inflated negative binomial",
               "gaussian": "Gaussian", "bernoulli": "Bernoulli"}

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;
background:#fff;line-height:1.45}
main{max-width:1500px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:36px 0 10px;
border-bottom:2px solid #0072B2;padding-bottom:4px}
.sub{color:#555;margin:0 0 18px}
table.facts{border-collapse:collapse;margin:8px 0 14px;font-size:14px}
table.facts th{text-align:left;font-weight:600;padding:3px 18px 3px 0;vertical-align:top;
white-space:nowrap;color:#333}
table.facts td{padding:3px 0;font-family:ui-monospace,Menlo,Consolas,monospace;
word-break:break-word}
figure{margin:10px 0 22px}figure img{max-width:100%;height:auto;display:block}
figcaption{color:#444;font-size:14px;max-width:1000px;margin-top:6px}
nav{font-size:14px;margin:10px 0 0}nav a{margin-right:14px;color:#0072B2}
h3{font-size:16px;margin:18px 0 4px}ul.notes{font-size:14px;color:#444;margin-top:4px}
table.names{border-collapse:collapse;font-size:14px;margin:8px 0}
table.names th{text-align:left;border-bottom:1px solid #999;padding:4px 14px 4px 0}
table.names td{padding:3px 14px 3px 0;border-bottom:1px solid #eee}
.swatch{display:inline-block;width:11px;height:11px;border-radius:6px;margin-right:6px}
p.caption{color:#444;font-size:14px;max-width:1000px}
"""


def has_geovae_outputs(adata: Any) -> bool:
    """Whether ``adata`` holds anything geovae wrote (run record, latent, clusters or the
    joint reference + query object)."""
    return (isinstance(adata.uns.get(K.UNS), dict) or K.REP in adata.obsm
            or K.CLUSTER in adata.obs or K.SOURCE in adata.obs)


def _latent_words(latent: Any) -> str | None:
    if not isinstance(latent, dict) or "geometry" not in latent:
        return None
    words = f"{latent['geometry']}, intrinsic dimension {latent.get('dim', '?')}"
    if latent.get("n_coordinates") and latent.get("n_coordinates") != latent.get("dim"):
        words += f" ({latent['n_coordinates']} coordinates)"
    for key in ("posterior", "flow"):
        if latent.get(key):
            words += f", {key} {latent[key]}"
    return words


def _versions(v: Any) -> str | None:
    return " · ".join(f"{k} {val}" for k, val in v.items()) if isinstance(v, dict) else None


def command_chain(info: dict[str, Any]) -> list[str]:
    """The commands that made the file, first to last (``commands``; files written before
    it was recorded: the last ``command`` only), numbered where there are several."""
    chain = [str(c) for c in np.atleast_1d(info.get("commands", [])) if str(c)]
    if not chain and info.get("command"):  # the writer: geovae.tools.record.command_chain
        chain = [str(info["command"])]
    return [f"{i}. {c}" for i, c in enumerate(chain, 1)] if len(chain) > 1 else chain


def header_facts(ctx: Context) -> list[tuple[str, Any]]:
    """The metadata table at the top: what was run, on what, how."""
    info, a = ctx.info, ctx.adata
    params = info.get("params") if isinstance(info.get("params"), dict) else {}
    model = info.get("model")
    epochs = None
    if params.get("epochs_run") is not None:
        epochs = f"{int(params['epochs_run'])} of at most {int(params.get('epochs', 0))}"
        mapping = info.get("transfer") if isinstance(info.get("transfer"), dict) else None
        if mapping is not None:  # the record's best epoch is the query mapping's
            epochs = f"reference fit {epochs}; query mapping {int(mapping.get('epochs_run', 0))}"
        if info.get("best_epoch") and (mapping is None or mapping.get("epochs_run")):
            epochs += f"; weights of epoch {int(info['best_epoch'])} kept"
        if info.get("stopped_early"):
            epochs += "; stopped early"
    agreement = info.get("label_agreement") if isinstance(info.get("label_agreement"),
                                                         dict) else {}
    scores = None
    if agreement:
        scores = (f"ARI {float(agreement['ari']):.3f}, NMI {float(agreement['nmi']):.3f} "
                  f"against {agreement.get('label_key')}")
        if agreement.get("accuracy") is not None:
            scores += f"; predicted labels accuracy {float(agreement['accuracy']):.3f}"
    held = info.get("heldout_loglik") if isinstance(info.get("heldout_loglik"), dict) else {}
    predictive = "; predictive: fitted mixture weights" if held.get("kind") == "predictive" \
        else ""
    loglik = (f"{float(held['per_cell']):.1f} nats per cell (± {float(held.get('se', 0)):.1f}"
              f" SE, {int(held.get('n_cells', 0)):,} {held.get('cells', 'validation')} cells, "
              f"{int(held.get('n_samples', 0))} samples{predictive})") if "per_cell" in held \
        else None
    cluster = info.get("cluster") if isinstance(info.get("cluster"), dict) else {}
    clusters = None
    if cluster:
        clusters = f"{cluster.get('n_clusters')} ({cluster.get('method')}"
        clusters += (f", resolution {cluster.get('resolution')})" if cluster.get("method") ==
                     "leiden" else ")")
    used = f", {int(info['n_features']):,} used by the model" if info.get("n_features") else ""
    shape = f"{a.n_obs:,} × {a.n_vars:,}{used}" if a.n_vars else f"{a.n_obs:,} cells"
    chain = command_chain(info)
    return [("commands" if len(chain) > 1 else "command", chain or None),
            ("model", MODEL_NAMES.get(str(model), model) if model else None),
            ("latent", _latent_words(info.get("latent"))),
            ("likelihood", LIKELIHOODS.get(str(info.get("likelihood")),
                                           info.get("likelihood"))),
            ("cells × features", shape),
            ("covariates", ", ".join(ctx.batch_keys) or None),
            ("known labels", ctx.label_key),
            ("clusters", clusters), ("agreement with labels", scores),
            ("held-out log-likelihood", loglik), ("epochs", epochs),
            ("device", params.get("device")), ("seed", info.get("seed")),
            ("versions", _versions(info.get("versions")))]


def build_html(adata: Any, *, reference: Any = None, label_key: str | None = None,
               name: str | None = None) -> str:
    """The report of ``adata`` as one HTML string (see `report`)."""
    if not has_geovae_outputs(adata):
        raise InputError(f"{name or 'the AnnData'} holds no geovae outputs (no "
                         "uns['geovae'], obsm['X_geovae'] or obs['geovae_cluster']): report "
                         "on a file written by geovae fit, embed, cluster or transfer")
    if label_key:
        from geovae.data.checks import check_obs_key

        check_obs_key(adata, label_key, "label_key")
    ctx = Context.of(adata, reference, label_key, name)
    sections: list[Section] = [s for s in (f(ctx) for f in SECTIONS) if s is not None]
    from geovae import __version__

    title = f"geovae report: {name}" if name else "geovae report"
    made = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = [str(n) for n in np.atleast_1d(ctx.info.get("notes", [])) if str(n)]
    kind = "joint reference + query object" if K.SOURCE in adata.obs else None
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">made {made} by geovae {html.escape(__version__)}'
        + (f"; {kind}" if kind else "") + "</p>",
        '<section id="run"><h2>Run</h2>' + table(header_facts(ctx)),
    ]
    if notes:
        parts.append('<h3>Notes</h3><ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>"
                                                     for n in notes) + "</ul>")
    parts.append("<nav>" + "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>'
                                   for s in sections) + "</nav></section>")
    for s in sections:
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.body}</section>')
    parts.append("</main></body></html>")
    return "\n".join(parts)


def report(adata: Any, out: str | os.PathLike, *, reference: Any = None,
           label_key: str | None = None, title: str | None = None) -> Path:
    """Write a self-contained HTML report of a geovae output.

    One file, pictures inline (no network, no scripts): the run's metadata, the cells on the
    UMAP by cluster, label and batch, the latent in its own geometry (sphere: an equal-area
    map; hyperbolic: the Poincaré disk with geodesics), training curves of each loss term
    with the KL warm-up and the kept epoch, cluster sizes, confusion matrices against known
    labels, the decoder volume element and, for transfer outputs, reference and query side
    by side with the unknown-call rate. Sections without data are left out.

    Parameters
    ----------
    adata
        The output of `geovae.fit`, `geovae.embed`, `geovae.cluster` or `geovae.transfer`
        (or of the command line), or the path of such an ``.h5ad``.
    out
        The ``.html`` file to write (written atomically: all of it or nothing).
    reference
        For transfer outputs: the reference's fit output, or the joint reference + query
        object (``OUT_STEM.joint.h5ad``), as AnnData or path; draws reference and query side
        by side.
    label_key
        obs column of known labels (default: the run's ``label_key`` / ``eval_key``).
    title
        Named in the report's heading (default: the input's file name, if a path).

    Returns
    -------
    The path written.

    Sets the following fields
    -------------------------
    None: ``adata`` is not modified.
    """
    from geovae.io.write import atomic_path

    name = title
    if isinstance(adata, (str, os.PathLike)):
        adata, name = read_output(adata), name or Path(adata).name
    if isinstance(reference, (str, os.PathLike)):
        reference = read_output(reference)
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"the report '{out}' must end in .html")
    text = build_html(adata, reference=reference, label_key=label_key, name=name)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out


def read_output(path: str | os.PathLike) -> Any:
    """Read an ``.h5ad`` without its matrix (obs, obsm, uns only: fast for large files), with
    one-line errors for a missing file or one that is not an .h5ad."""
    import anndata as ad
    import h5py

    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file '{p}' does not exist: check the path"
                         if not p.exists() else f"'{p}' is a folder: give an .h5ad file")
    if not h5py.is_hdf5(p):
        raise InputError(f"'{p}' is not an .h5ad file (not HDF5): give the .h5ad written by "
                         "geovae fit, embed, cluster or transfer")
    try:
        with h5py.File(p, "r") as f:
            keys = [k for k in ("obs", "obsm", "uns", "var") if k in f]
            if "obs" not in keys:
                raise InputError(f"'{p}' is an HDF5 file but not an AnnData .h5ad (no obs): "
                                 "give the .h5ad written by geovae")
            parts = {k: ad.io.read_elem(f[k]) for k in keys}
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py/anndata raise many types for bad files
        raise InputError(f"cannot read '{p}' as .h5ad ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}): give the "
                         ".h5ad written by geovae") from exc
    return ad.AnnData(obs=parts["obs"], var=parts.get("var"), obsm=parts.get("obsm") or None,
                      uns=parts.get("uns") or {})
