"""The UMAP figure written beside a run's outputs, and the scatter panels every geovae picture
is made of: titles in words, legends beside the points (never on them), colour-blind-safe
palettes (`geovae.report.palette`), one colour per category name across panels.

PNGs are written at `DPI`; a plot path ending in .svg or .pdf gives a vector file (text as
text; the points themselves are embedded as a `DPI` raster so that files of many cells stay
small).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geovae import _keys as K
from geovae.report.palette import (
    MISSING,
    SAFE_UP_TO,
    categories,
    category_colors,
    is_continuous,
    is_missing,
    new_figure,
    style,
)

#: file suffix -> matplotlib format
PLOT_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
#: resolution of PNGs (and of the points inside vector files)
DPI = 200
LEGEND_MAX = 40  # legend entries shown (more: the rest are summarised)


@dataclass
class ColorSpec:
    """One categorical colouring of the cells: a column, its title in words, its values
    (strings) and the colour of each category."""

    column: str
    title: str
    values: np.ndarray
    colors: dict[str, str]
    #: numbers drawn on a colour scale (``values`` are floats, ``colors`` empty)
    continuous: bool = False
    #: the legend's name of a category where it is not the category (clusters' names)
    names: dict[str, str] | None = None

    def legend_name(self, category: str) -> str:
        return (self.names or {}).get(category, category)

    @property
    def names_on_plot(self) -> bool:
        """Write category names at their centres: clusters, and palettes beyond the safe
        size."""
        if self.continuous:
            return False
        n = sum(not is_missing(c) for c in self.colors)
        return self.column == K.CLUSTER or n > SAFE_UP_TO


def record_of(adata: Any) -> dict[str, Any]:
    """``uns['geovae']`` (empty where absent)."""
    info = adata.uns.get(K.UNS) if hasattr(adata, "uns") else None
    return info if isinstance(info, dict) else {}


def roles(adata: Any, label_key: str | None = None) -> tuple[str | None, list[str]]:
    """The known-label column and the batch columns, from the arguments or the run record."""
    info = record_of(adata)
    params = info.get("params", {}) if isinstance(info.get("params"), dict) else {}
    agreement = info.get("label_agreement", {})
    transfer = info.get("transfer", {})
    candidates = [label_key, agreement.get("label_key") if isinstance(agreement, dict) else None,
                  transfer.get("eval_key") if isinstance(transfer, dict) else None,
                  params.get("label_key")]
    label = next((str(c) for c in candidates if c and str(c) in adata.obs.columns), None)
    batches = [str(b) for b in np.atleast_1d(params.get("batch_keys", [])) if str(b)]
    if K.SOURCE in adata.obs.columns and not info:  # the joint object: label + conditions
        label = label or ("label" if "label" in adata.obs.columns else None)
        batches = [str(c) for c in adata.obs.columns if c not in (K.SOURCE, "label")]
    return label, [b for b in batches if b in adata.obs.columns]


def title_of(column: str, label_key: str | None, batch_keys: list[str],
             info: dict[str, Any]) -> str:
    """A panel title in words (the column name in brackets where it is the user's)."""
    if column == K.CLUSTER:
        method = (info.get("cluster") or {}).get("method")
        return "Mixture components" if method == "mixture" else "Clusters (Leiden)"
    fixed = {K.LABEL: "Predicted label", K.SOURCE: "Reference or query",
             "label": "Cell label"}
    if column in fixed:
        return fixed[column]
    if column == label_key:
        return f"Known labels ({column})"
    if column in batch_keys:
        return f"Condition / batch ({column})"
    return column.replace("_", " ").capitalize()


def label_columns(adata: Any, label_key: str | None) -> list[str]:
    """The columns holding cell-type names: known, predicted, joint labels (not numbers
    drawn on a colour scale)."""
    return [c for c in (label_key, K.LABEL, "label")
            if c and c in adata.obs.columns and not is_continuous(adata.obs[c])]


def color_specs(adata: Any, columns: list[str], label_key: str | None = None,
                batch_keys: list[str] | None = None,
                label_colors: dict[str, str] | None = None) -> list[ColorSpec]:
    """`ColorSpec` of each present column; the known labels and the predicted labels share
    one colour map, ``label_colors`` where given (the same cell type has the same colour in
    every panel); the clusters' colours are none of the labels'; numeric columns
    (`is_continuous`) are drawn on a colour scale, as scanpy does."""
    info = record_of(adata)
    batch_keys = batch_keys or []
    present = [c for c in dict.fromkeys(columns) if c and c in adata.obs.columns]
    label_like = label_columns(adata, label_key)
    shared = label_colors or category_colors(*[categories(adata.obs[c]) for c in label_like])
    specs = []
    for col in present:
        title = title_of(col, label_key, batch_keys, info)
        if is_continuous(adata.obs[col]):
            specs.append(ColorSpec(col, title, adata.obs[col].to_numpy(dtype=float), {},
                                   continuous=True))
            continue
        cats = categories(adata.obs[col])
        if col == K.SOURCE:  # the reference first: the colour of the first condition
            cats = sorted(cats, key=lambda c: c != "reference")
        avoid = shared.values() if col == K.CLUSTER else ()
        colors = shared if col in label_like else category_colors(cats, avoid=avoid)
        values = adata.obs[col].astype(str).to_numpy()
        names = None
        if col == K.CLUSTER and K.CLUSTER_NAME in adata.obs.columns:  # "3: CD14 Mono"
            names = dict(zip(values, adata.obs[K.CLUSTER_NAME].astype(str), strict=True))
        specs.append(ColorSpec(col, title, values, colors, names=names))
    return specs


def headline(adata: Any, name: str | None = None) -> str:
    """The title line of a run's figures: data set, model and latent, agreement with the
    known labels (ARI of the clusters; accuracy of transferred labels)."""
    info = record_of(adata)
    model = {"vae": "VAE", "cgmvae": "c*GMΔVAE"}.get(str(info.get("model")), info.get("model"))
    latent = info.get("latent") if isinstance(info.get("latent"), dict) else {}
    parts = [str(info.get("dataset") or name or "")]
    if model:
        geometry = latent.get("geometry")
        parts.append(f"{model}, {geometry} latent" if geometry else str(model))
    agreement = info.get("label_agreement")
    key = agreement.get("label_key") if isinstance(agreement, dict) else None
    numbers = key in adata.obs.columns and is_continuous(adata.obs[key])  # no ARI to show
    if isinstance(agreement, dict) and agreement.get("ari") is not None and not numbers:
        parts.append(f"ARI {float(agreement['ari']):.2f} vs {agreement.get('label_key')}")
    transfer = info.get("transfer")
    if isinstance(transfer, dict) and transfer.get("accuracy") is not None:
        parts.append(f"transferred labels: accuracy {float(transfer['accuracy']):.2f}")
    return " · ".join(p for p in parts if p)


def point_size(n: int) -> float:
    """Marker area (points²) that keeps a few hundred to a million cells readable."""
    return float(np.clip(15000.0 / max(n, 1), 0.5, 30.0))


def _short(name: str, width: int = 32) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def style_embedding(ax: Any, xlabel: str = "UMAP 1", ylabel: str = "UMAP 2") -> None:
    """No ticks (the axes' numbers mean nothing), axis names only."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def scatter_categories(ax: Any, xy: np.ndarray, spec: ColorSpec, *, title: str | None = None,
                       mask: np.ndarray | None = None, background: np.ndarray | None = None,
                       size: float | None = None, legend: bool = True,
                       legend_title: str | None = None) -> None:
    """Cells coloured by category: unknown-like cells grey and underneath, the rest in a
    seeded random order (no category hides another by drawing order), a legend outside the
    axes with each category's cell count; ``background`` points light grey under all.
    A continuous spec is drawn on a colour scale (`scatter_values`)."""
    xy = np.asarray(xy, dtype=float)[:, :2]
    if spec.continuous:
        scatter_values(ax.figure, ax, xy if mask is None else xy[mask],
                       spec.values if mask is None else spec.values[mask],
                       title=title or spec.title, label=spec.column)
        return
    values = spec.values if mask is None else spec.values[mask]
    pts = xy if mask is None else xy[mask]
    size = point_size(len(xy) + (0 if background is None else len(background))) \
        if size is None else size
    if background is not None:
        ax.scatter(background[:, 0], background[:, 1], s=size, c="#E6E6E6", linewidths=0,
                   rasterized=True)
    missing = np.array([is_missing(v) for v in values], dtype=bool)
    ax.scatter(pts[missing, 0], pts[missing, 1], s=size, c=MISSING, linewidths=0,
               rasterized=True)
    order = np.random.default_rng(0).permutation(np.flatnonzero(~missing))
    ax.scatter(pts[order, 0], pts[order, 1], s=size, linewidths=0, rasterized=True,
               c=[spec.colors.get(v, MISSING) for v in values[order]])
    ax.set_title(title or spec.title)
    if spec.names_on_plot:
        _names_on_plot(ax, pts[~missing], values[~missing])
    if legend:
        _legend(ax, values, spec, legend_title)


def _names_on_plot(ax: Any, xy: np.ndarray, values: np.ndarray) -> None:
    import matplotlib.patheffects as pe

    halo = [pe.withStroke(linewidth=2.5, foreground="white")]
    for cat in np.unique(values):
        here = xy[values == cat]
        if len(here):
            x, y = np.median(here, axis=0)
            ax.text(x, y, _short(str(cat), 14), ha="center", va="center", fontsize=9,
                    fontweight="bold", path_effects=halo)


def _legend(ax: Any, values: np.ndarray, spec: ColorSpec, title: str | None) -> None:
    from matplotlib.lines import Line2D

    colors = spec.colors
    counts = {c: int(np.sum(values == c)) for c in colors}
    shown = [c for c in colors if counts[c]]
    handles = [Line2D([], [], ls="", marker="o", markersize=7, color=colors[c],
                      label=f"{_short(spec.legend_name(c))} ({counts[c]:,})")
               for c in shown[:LEGEND_MAX]]
    if len(shown) > LEGEND_MAX:
        handles.append(Line2D([], [], ls="", label=f"… {len(shown) - LEGEND_MAX} more"))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              ncol=1 if len(handles) <= 14 else 2, handletextpad=0.2, borderaxespad=0,
              columnspacing=0.8, title=title)


def scatter_values(fig: Any, ax: Any, xy: np.ndarray, values: np.ndarray, *, title: str,
                   label: str, cmap: str = "viridis") -> None:
    """Cells coloured by a number (viridis: colour-blind safe and monotone in lightness),
    1st–99th percentile colour range, high values drawn on top, a labelled colour bar."""
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    order = np.flatnonzero(ok)[np.argsort(values[ok])]
    lo, hi = np.percentile(values[ok], [1, 99]) if ok.any() else (0.0, 1.0)
    ax.scatter(xy[~ok, 0], xy[~ok, 1], s=point_size(len(xy)), c=MISSING, linewidths=0,
               rasterized=True)
    points = ax.scatter(xy[order, 0], xy[order, 1], s=point_size(len(xy)), c=values[order],
                        cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1, linewidths=0,
                        rasterized=True)
    fig.colorbar(points, ax=ax, label=label, shrink=0.8)
    ax.set_title(title)


def umap_of(adata: Any) -> np.ndarray | None:
    """geovae's UMAP (``obsm['X_geovae_umap']``), else ``obsm['X_umap']``."""
    for key in (K.UMAP_GEOVAE, K.UMAP):
        if key in adata.obsm:
            return np.asarray(adata.obsm[key], dtype=float)
    return None


def legend_width(spec: ColorSpec) -> float:
    """Inches the legend (or colour bar) of ``spec`` takes beside its panel."""
    if spec.continuous:
        return 1.3
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    from geovae.report.palette import STYLE

    values = spec.values
    shown = [c for c in spec.colors if np.any(values == c)][:LEGEND_MAX]
    size, font = STYLE["legend.fontsize"], FontProperties()
    longest = max([TextPath((0, 0), f"{_short(spec.legend_name(c))} "
                            f"({int(np.sum(values == c)):,})", size=size,
                            prop=font).get_extents().width / 72 for c in shown] or [0.5])
    ncol = 1 if len(shown) <= 14 else 2
    return ncol * (0.45 + longest) + (ncol - 1) * 0.12  # marker and padding, column gap


def panel_grid(n: int, specs: list[ColorSpec], ncols: int = 3, height: float = 4.2,
               projection: str | None = None, max_width: float | None = None
               ) -> tuple[Any, list[Any]]:
    """A figure of ``n`` scatter panels (one per spec), each column as wide as its panels'
    legends need, so the points keep the same size in every panel; with ``max_width``
    (inches) fewer columns where the figure would be wider (a page shrinks a wider picture,
    and its text with it)."""
    cols = max(1, min(n, ncols))
    while True:
        widths = [4.4 + max(legend_width(specs[i]) for i in range(j, n, cols))
                  for j in range(cols)]
        if max_width is None or cols == 1 or sum(widths) <= max_width:
            break
        cols -= 1
    rows = -(-n // cols)
    fig = new_figure(sum(widths), rows * height)
    subs = fig.subfigures(rows, cols, width_ratios=widths, squeeze=False).ravel()
    return fig, [subs[i].add_subplot(projection=projection) for i in range(n)]


def umap_figure(adata: Any, extra_colors: list[str], label_key: str | None = None,
                batch_keys: list[str] | None = None, name: str | None = None,
                title: str | None = None) -> Any:
    """UMAP panels: clusters, the given obs columns (known labels, batches) and predicted
    labels, titled with the data set (the record's, else ``name``), model and agreement
    with the labels (`headline`; ``title`` instead where given). Writes each categorical
    panel's colours to ``uns['<column>_colors']`` (scanpy's convention, so scanpy's own
    plots use the same colours)."""
    xy = umap_of(adata)
    if xy is None:
        raise ValueError("no UMAP to plot: obsm has neither X_geovae_umap nor X_umap")
    label, batches = roles(adata, label_key)
    specs = color_specs(adata, [K.CLUSTER, *extra_colors, K.LABEL], label,
                        batches if batch_keys is None else batch_keys)
    with style():
        fig, axes = panel_grid(len(specs), specs)
        for ax, spec in zip(axes, specs, strict=True):
            scatter_categories(ax, xy, spec)
            style_embedding(ax)
        title = headline(adata, name) if title is None else title
        if title:
            fig.suptitle(title, fontsize=13, fontweight="bold")
    for spec in specs:
        _store_colors(adata, spec)
    return fig


def _store_colors(adata: Any, spec: ColorSpec) -> None:
    import pandas as pd

    col = adata.obs[spec.column]
    if isinstance(col.dtype, pd.CategoricalDtype) and not spec.continuous:
        adata.uns[f"{spec.column}_colors"] = np.asarray(
            [spec.colors.get(str(c), MISSING) for c in col.cat.categories], dtype=object)


def save_figure(fig: Any, tmp: Path, final: Path, dpi: int = DPI) -> None:
    """Write ``fig`` to ``tmp`` in the format ``final``'s suffix names (PNG at ``dpi``)."""
    with style():
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight",
                    format=PLOT_FORMATS[Path(final).suffix.lower()])
    if "matplotlib.pyplot" in sys.modules:  # a pyplot figure: free it
        import matplotlib.pyplot as plt

        plt.close(fig)
