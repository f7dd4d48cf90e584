"""The sections of the HTML report. Each returns a `Section`, or None where the output has
nothing to show for it (a section is never faked: no labels, no confusion matrix)."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geovae import _keys as K
from geovae.geometry.manifolds import MANIFOLDS, get_manifold
from geovae.report import figures as F
from geovae.report.palette import is_continuous
from geovae.report.plot import (
    ColorSpec,
    color_specs,
    panel_grid,
    record_of,
    roles,
    scatter_categories,
    style_embedding,
    umap_of,
)

#: resolution of the report's inline PNGs
REPORT_DPI = 130


@dataclass
class Section:
    """One part of the report: an anchor id, a heading and its HTML body."""

    id: str
    title: str
    body: str
    figures: int = 0


@dataclass
class Context:
    """What the sections draw from: the output, its run record and the columns' roles."""

    adata: Any
    reference: Any = None
    label_key: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    batch_keys: list[str] = field(default_factory=list)
    #: (reference UMAP, reference labels, query UMAP, predictions, known labels or None)
    pair: tuple[Any, ...] | None = None
    label_colors: dict[str, str] = field(default_factory=dict)
    #: the title line of every figure: data set, model, agreement with the labels
    headline: str = ""

    @classmethod
    def of(cls, adata: Any, reference: Any = None, label_key: str | None = None,
           name: str | None = None) -> Context:
        from geovae.report.palette import categories, category_colors
        from geovae.report.plot import headline, label_columns

        label, batches = roles(adata, label_key)
        ctx = cls(adata, reference, label, record_of(adata), batches)
        ctx.headline = headline(adata, name)
        ctx.pair = _reference_and_query(ctx)
        groups = [categories(adata.obs[c]) for c in label_columns(adata, label)]
        if ctx.pair is not None:
            groups.append(categories(ctx.pair[1]))
        ctx.label_colors = category_colors(*groups)
        return ctx

    def specs(self, columns: list[str]) -> list[ColorSpec]:
        return color_specs(self.adata, columns, self.label_key, self.batch_keys,
                           self.label_colors)

    def figure(self, fig: Any, caption: str, title: str | None = None) -> str:
        """`figure` with the figure titled: ``title`` (what it shows) over the headline."""
        heading = "\n".join(t for t in (title, self.headline) if t)
        if heading:
            fig.suptitle(heading, fontsize=12, fontweight="bold")
        return figure(fig, caption)

    @property
    def panels(self) -> list[ColorSpec]:
        """The colourings of every cell picture: clusters, known labels, predicted labels,
        batches, reference/query."""
        return self.specs([K.CLUSTER, self.label_key or "", K.LABEL, *self.batch_keys,
                           K.SOURCE, "label"])


def png(fig: Any, dpi: int = REPORT_DPI, alt: str = "figure") -> str:
    """An ``<img>`` with the figure inline as a base64 PNG."""
    from geovae.report.palette import style

    buf = io.BytesIO()
    with style():
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    raw = buf.getvalue()
    width = round(int.from_bytes(raw[16:20], "big") * 96 / dpi)  # PNG IHDR: pixels
    data = base64.b64encode(raw).decode("ascii")
    return (f'<img alt="{html.escape(alt, quote=True)}" width="{width}" '
            f'src="data:image/png;base64,{data}">')


def figure(fig: Any, caption: str) -> str:
    alt = caption.split(". ")[0][:120]
    return (f"<figure>{png(fig, alt=alt)}<figcaption>{html.escape(caption)}</figcaption>"
            "</figure>")


def umap_section(ctx: Context) -> Section | None:
    xy = umap_of(ctx.adata)
    specs = ctx.panels
    if xy is None or not specs:
        return None
    from geovae.report.palette import PAGE_WIDTH, style

    with style():
        fig, axes = panel_grid(len(specs), specs, ncols=2, max_width=PAGE_WIDTH)
        for ax, spec in zip(axes, specs, strict=True):
            scatter_categories(ax, xy, spec)
            style_embedding(ax)
    key = K.UMAP_GEOVAE if K.UMAP_GEOVAE in ctx.adata.obsm else K.UMAP
    text = (f"UMAP of the latent's kNN graph (obsm['{key}']), {len(xy):,} cells. The same "
            "category has the same colour in every panel; grey: unknown or unlabelled.")
    return Section("umap", "Cells on the UMAP", ctx.figure(fig, text), 1)


def latent_section(ctx: Context) -> Section | None:
    """The latent in its manifold's own chart (`geovae.geometry.Manifold.chart`,
    `figures.CHARTS`): none for a flat latent (the UMAP is its picture)."""
    latent = ctx.info.get("latent") or {}
    geometry = latent.get("geometry") if isinstance(latent, dict) else None
    if K.REP not in ctx.adata.obsm or geometry not in MANIFOLDS:
        return None
    draw = F.CHARTS.get(get_manifold(geometry).chart)
    specs = [s for s in ctx.panels if s.column != K.SOURCE][:2]
    if draw is None or not specs:
        return None
    fig, title, text = draw(ctx.adata, specs)
    return Section("latent", title, ctx.figure(fig, text), 1)


def epochs_text(epochs: float) -> str:
    """``100 epochs``, ``1 epoch``, ``2.5 epochs``."""
    n = round(epochs, 1)
    shown = f"{n:.0f}" if n == int(n) else f"{n:.1f}"
    return f"{shown} epoch" + ("" if shown == "1" else "s")


def training_section(ctx: Context) -> Section | None:
    history = ctx.info.get("loss_history")
    if not isinstance(history, dict) or not np.size(history.get("train", [])):
        return None
    best = ctx.info.get("best_epoch")
    fig = F.curves_figure(history, int(best) if best else None)
    warm = history.get("warmup_epochs")
    transfer = ctx.info.get("transfer")
    heading, text = "Training", ""
    if isinstance(transfer, dict) and transfer.get("epochs_run"):
        heading = "Training of the query mapping"
        text = ("The query mapping (geovae transfer): the weights it trained ("
                + (trained_words(transfer) or "see Reference and query") + ") on the query "
                "cells. The reference model's own training is in the reference's report. ")
    elif isinstance(transfer, dict):  # nothing trained: the record keeps the reference's
        heading = "Training of the reference model"
        text = ("The query mapping trained nothing (" + (trained_words(transfer) or "")
                + "): these are the reference model's training curves. ")
    text += ("Mean loss per cell and epoch. Train losses use the KL weight of the moment "
             "(it rises linearly during the warm-up); validation uses the full weight. ")
    if warm is None:
        text += "The KL warm-up of this model's training is not recorded here. "
    elif float(warm) > 0:
        text += f"Shaded: the KL warm-up ({epochs_text(float(warm))}). "
    else:
        text += "No KL warm-up: the full KL weight from the first step. "
    if best:
        text += (f"Dashed: epoch {int(best)}, whose weights were kept"
                 + (" (training stopped early)." if ctx.info.get("stopped_early") else "."))
    title = {"Training of the query mapping": "Query mapping (transfer): training on the "
             "query cells"}.get(heading, heading)
    return Section("training", heading, ctx.figure(fig, text, title), 1)


def sizes_section(ctx: Context) -> Section | None:
    specs = ctx.specs([K.CLUSTER])
    if not specs:
        return None
    fig = F.sizes_figure(specs[0])
    body = ctx.figure(fig, "Cells in each cluster (obs['geovae_cluster']).")
    empty = ctx.info.get("empty_components")
    mixture = (ctx.info.get("cluster") or {}).get("method") == "mixture"
    if mixture and empty is not None and np.size(empty):
        body += _p(f"Mixture components with < 0.5% weight (empty): "
                   f"{', '.join(str(e) for e in np.atleast_1d(empty))}.")
    return Section("sizes", "Cluster sizes", body, 1)


def confusion_section(ctx: Context) -> Section | None:
    key, obs = ctx.label_key, ctx.adata.obs
    if not key or key not in obs or is_continuous(obs[key]):  # numbers: no confusion table
        return None
    truth = obs[key].astype(str).to_numpy()
    parts, n = [], 0
    for col, name in ((K.LABEL, "predicted label"), (K.CLUSTER, "cluster")):
        if col in obs:
            pred = obs[col].astype(str).to_numpy()
            fig = F.confusion_figure(truth, pred, f"known label ({key})", name,
                                     _scores(truth, pred, col))
            parts.append(ctx.figure(fig, f"Known labels (obs['{key}'], rows) against the "
                                     f"{name}s (obs['{col}'], columns): the fraction of each "
                                     "label's cells in each column; numbers are cells. "
                                     "Unlabelled cells are left out."))
            n += 1
    if not parts:
        return None
    return Section("confusion", "Clusters and labels", "".join(parts), n)


def _scores(truth: np.ndarray, pred: np.ndarray, column: str) -> str:
    """The title of a confusion matrix: accuracy (labels) or ARI and NMI (clusters) on the
    labelled cells."""
    from geovae.report.palette import is_missing

    keep = np.array([not is_missing(t) for t in truth], dtype=bool)
    t, p = truth[keep], pred[keep]
    if column == K.LABEL:
        return f"Predicted labels: accuracy {np.mean(t == p):.3f} ({len(t):,} cells)"
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return (f"Clusters: ARI {adjusted_rand_score(t, p):.3f}, "
            f"NMI {normalized_mutual_info_score(t, p):.3f} ({len(t):,} cells)")


def volume_section(ctx: Context) -> Section | None:
    xy = umap_of(ctx.adata)
    if K.VOLUME not in ctx.adata.obs or xy is None:
        return None
    fig = F.volume_figure(xy, ctx.adata.obs[K.VOLUME].to_numpy())
    text = ("obs['geovae_volume'] = log √det JᵀJ of the decoder's Jacobian at each cell's "
            "latent: how much the decoder stretches a small patch of the latent. Colours "
            "span the 1st to 99th percentile.")
    return Section("volume", "Decoder volume element", ctx.figure(fig, text), 1)


def transfer_section(ctx: Context) -> Section | None:
    info = ctx.info.get("transfer")
    joint = K.SOURCE in ctx.adata.obs
    if not isinstance(info, dict) and not joint:
        return None
    info = info if isinstance(info, dict) else {}
    parts, n = [], 0
    if ctx.pair is not None:
        ref_xy, ref_labels, query_xy, query_pred, truth = ctx.pair
        colors = ctx.label_colors
        ref_spec = ColorSpec("label", "Cell label", ref_labels, colors)
        q_spec = ColorSpec(K.LABEL, "Transferred label", query_pred, colors)
        t_spec = ColorSpec("label", f"Known label ({ctx.label_key})", truth, colors) \
            if truth is not None else None
        fig = F.transfer_figure(ref_xy, query_xy, ref_spec, q_spec, t_spec)
        parts.append(ctx.figure(fig, "Reference and query cells on the same UMAP axes (the "
                                 "query placed on the reference's UMAP); in the query panels "
                                 "the reference cells are drawn light grey underneath. Same "
                                 "label, same colour."))
        n += 1
    else:
        parts.append(_p("The reference cells are not in this file: give the reference's fit "
                        "output (--reference) or keep OUT_STEM.joint.h5ad beside the query "
                        "output to see reference and query side by side."))
    obs = ctx.adata.obs
    if K.LABEL_CONFIDENCE in obs:
        threshold = float(info.get("unknown_threshold", 0.5))
        parts.append(ctx.figure(F.confidence_figure(obs[K.LABEL_CONFIDENCE].to_numpy(), threshold),
                            "Confidence of each query cell's transferred label; below the "
                            "threshold the label is 'unknown'."))
        n += 1
    facts = [("unknown-call rate", _pct(info.get("fraction_unknown"))),
             ("accuracy (known labels)", _num(info.get("accuracy"))),
             ("macro-F1", _num(info.get("macro_f1"))),
             ("cells evaluated", _int(info.get("n_evaluated"))),
             ("features matched", _int(info.get("n_features_matched"))),
             ("features missing (zero-filled)", _int(info.get("n_missing_features"))),
             ("weights trained", trained_words(info)),
             ("epochs", _int(info.get("epochs_run"))), *mixing_facts(info)]
    return Section("transfer", "Reference and query", table(facts) + "".join(parts), n)


def trained_words(info: dict[str, Any]) -> str | None:
    """What the query mapping trained, in words (``--freeze all`` trains only the new
    covariate categories' columns, not all weights)."""
    freeze = info.get("freeze")
    if freeze is None:
        return None
    n = info.get("n_trainable_weights")
    count = f"{int(n):,} weights" if n is not None else "weights"
    added = info.get("new_categories") if isinstance(info.get("new_categories"), dict) else {}
    new = "; ".join(f"{k}: {', '.join(str(c) for c in np.atleast_1d(v))}"
                    for k, v in added.items() if np.size(v))
    if freeze == "all":
        if not n:
            return ("none: the reference's weights as they are (--freeze all, no new "
                    "covariate categories)")
        return (f"only the new covariate categories' columns ({new}), {count}; every weight "
                "of the reference kept (--freeze all)")
    if freeze == "covariates":
        return (f"the layers the covariates enter, {count}"
                + (f" (new categories {new})" if new else "") + " (--freeze covariates)")
    return f"every weight, {count} (--freeze none)"


def mixing_facts(info: dict[str, Any]) -> list[tuple[str, Any]]:
    """The scIB mixing scores of the query against the reference (``transfer.mixing``)."""
    mix = info.get("mixing")
    if not isinstance(mix, dict):
        return []
    cells = f"; {int(mix['n_cells']):,} cells" if mix.get("n_cells") is not None else ""
    return [(f"iLISI, query with reference (1 = fully mixed{cells})", _num(mix.get("ilisi"))),
            ("iLISI within labels", _num(mix.get("ilisi_per_label"))),
            ("kBET acceptance within labels", _num(mix.get("kbet"))),
            ("batch silhouette within labels (1 = mixed)", _num(mix.get("batch_asw"))),
            ("label silhouette (1 = types apart)", _num(mix.get("label_asw")))]


def _reference_and_query(ctx: Context) -> tuple[Any, ...] | None:
    """(reference UMAP, reference labels, query UMAP, query predictions, query known labels
    or None) from a joint object (the input or ``reference``) or a reference fit output."""
    a = ctx.adata
    if K.SOURCE in a.obs and umap_of(a) is not None:
        src = a.obs[K.SOURCE].astype(str).to_numpy()
        lab = a.obs["label"].astype(str).to_numpy() if "label" in a.obs else None
        xy = umap_of(a)
        if lab is None:
            return None
        ref, qry = src == "reference", src == "query"
        return xy[ref], lab[ref], xy[qry], lab[qry], None
    ref, xy = ctx.reference, umap_of(a)
    if ref is None or xy is None or K.LABEL not in a.obs:
        return None
    truth = a.obs[ctx.label_key].astype(str).to_numpy() if ctx.label_key else None
    pred = a.obs[K.LABEL].astype(str).to_numpy()
    if K.SOURCE in ref.obs:  # the joint object: its reference part
        part = ref.obs[K.SOURCE].astype(str).to_numpy() == "reference"
        ref_xy = umap_of(ref)
        if ref_xy is None or "label" not in ref.obs:
            return None
        return ref_xy[part], ref.obs["label"].astype(str).to_numpy()[part], xy, pred, truth
    ref_label, _ = roles(ref)
    ref_xy = umap_of(ref)
    if ref_xy is None or ref_label is None:
        return None
    return ref_xy, ref.obs[ref_label].astype(str).to_numpy(), xy, pred, truth


# ------------------------------------------------------------------ small HTML pieces
def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _num(v: Any) -> str | None:
    return None if v is None else f"{float(v):.3f}"


def _pct(v: Any) -> str | None:
    return None if v is None else f"{float(v):.1%}"


def _int(v: Any) -> str | None:
    return None if v is None else f"{int(v):,}"


def table(rows: list[tuple[str, Any]]) -> str:
    """A two-column table of the rows that have a value (a list: one line each)."""
    def cell(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "<br>".join(html.escape(str(x)) for x in v)
        return html.escape(str(v))

    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{cell(v)}</td></tr>"
                    for k, v in rows if v is not None and len(v if isinstance(v, (list, tuple))
                                                              else str(v)))
    return f'<table class="facts">{cells}</table>' if cells else ""
