"""The report's pictures beyond the UMAP: the latent in its own geometry (an equal-area map
of the sphere, the Poincaré disk), training curves, cluster sizes, confusion matrices and
reference vs query on the same axes. Each function returns a matplotlib figure."""

from __future__ import annotations

from typing import Any

import numpy as np

from geovae import _keys as K
from geovae.report.palette import (
    MISSING,
    OKABE_ITO,
    PAGE_WIDTH,
    is_missing,
    new_figure,
    style,
)
from geovae.report.plot import (
    ColorSpec,
    panel_grid,
    point_size,
    scatter_categories,
    scatter_values,
    style_embedding,
)

TERM_NAMES = {"reconstruction": "Reconstruction, −log p(x | z)",
              "kl_z": "KL divergence of z", "kl_w": "KL divergence of w",
              "kl_y": "KL divergence of y (component)",
              "kl_d": "KL divergence of d (mixture weights)",
              "classification": "Label classification loss"}
TRAIN, VALIDATION, BEST = OKABE_ITO[0], OKABE_ITO[1], OKABE_ITO[5]


# ------------------------------------------------------------------ latent geometry
def rotate_to_front(x: np.ndarray) -> np.ndarray:
    """Points on S² rotated so that their mean direction is (1, 0, 0), the centre of the map
    (a proper rotation, Rodrigues' formula: no mirror image)."""
    m = x.mean(axis=0)
    if np.linalg.norm(m) < 1e-12:
        return x
    m = m / np.linalg.norm(m)
    e1 = np.array([1.0, 0.0, 0.0])
    axis, cos = np.cross(m, e1), float(np.clip(m @ e1, -1, 1))
    sin = float(np.linalg.norm(axis))
    if sin < 1e-12:
        return x if cos > 0 else x * np.array([-1.0, -1.0, 1.0])
    k = axis / sin
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rot = np.eye(3) + sin * kx + (1 - cos) * kx @ kx
    return x @ rot.T


def sphere_lonlat(z: np.ndarray) -> np.ndarray:
    """Longitude and latitude (radians) of sphere latents: the first three coordinates,
    renormalised onto S², rotated so that the cells' mean direction is the map's centre."""
    x = np.asarray(z, dtype=float)[:, :3]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = rotate_to_front(x)
    return np.column_stack([np.arctan2(x[:, 1], x[:, 0]), np.arcsin(np.clip(x[:, 2], -1, 1))])


def sphere_figure(z: np.ndarray, specs: list[ColorSpec]) -> Any:
    """The sphere latent on a Hammer equal-area map (areas, hence densities of cells, are
    true), one panel per colouring."""
    lonlat = sphere_lonlat(z)
    with style():
        fig, axes = panel_grid(len(specs), specs, ncols=2, projection="hammer",
                               max_width=PAGE_WIDTH)
        for ax, spec in zip(axes, specs, strict=True):
            ax.grid(True, color="#CCCCCC", linewidth=0.6)
            ax.set_xticklabels([])
            ax.set_yticklabels([])
            scatter_categories(ax, lonlat, spec)
    return fig


def poincare_of(adata: Any) -> np.ndarray:
    """Poincaré-disk coordinates of hyperbolic latents: ``obsm['X_geovae_poincare']``, else
    from the Lorentz coordinates x ↦ x[1:] / (1 + x[0]); the first two of them."""
    if K.REP_POINCARE in adata.obsm:
        ball = np.asarray(adata.obsm[K.REP_POINCARE], dtype=float)
    else:
        x = np.asarray(adata.obsm[K.REP], dtype=float)
        ball = x[:, 1:] / (1.0 + x[:, :1])
    return ball[:, :2]


def geodesic_grid(distances: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)) -> list[np.ndarray]:
    """Geodesics of the Poincaré disk for its grid: both diameters, and the geodesics that
    cross each diameter at right angles at hyperbolic distance t from the centre (arcs of
    circles orthogonal to the boundary, through the point tanh(t/2) on the diameter)."""
    lines = [np.array([[-1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, -1.0], [0.0, 1.0]])]
    for t in distances:
        a = np.tanh(t / 2)
        c, r = (a + 1 / a) / 2, (1 / a - a) / 2  # centre (c, 0), radius r: c² = 1 + r²
        half = np.arccos(r / c)
        theta = np.linspace(np.pi - half, np.pi + half, 201)  # odd: the middle is θ = π
        arc = np.column_stack([c + r * np.cos(theta), r * np.sin(theta)])
        for sx, sy, swap in ((1, 1, False), (-1, 1, False), (1, 1, True), (1, -1, True)):
            pts = arc * np.array([sx, sy])
            lines.append(pts[:, ::-1] if swap else pts)
    return lines


def poincare_figure(ball: np.ndarray, specs: list[ColorSpec]) -> Any:
    """The hyperbolic latent in the Poincaré disk with a grid of geodesics."""
    with style():
        fig, axes = panel_grid(len(specs), specs, ncols=2, max_width=PAGE_WIDTH)
        theta = np.linspace(0, 2 * np.pi, 400)
        for ax, spec in zip(axes, specs, strict=True):
            for line in geodesic_grid():
                ax.plot(line[:, 0], line[:, 1], color="#D0D0D0", linewidth=0.7, zorder=0)
            ax.plot(np.cos(theta), np.sin(theta), color="#555555", linewidth=1.0)
            scatter_categories(ax, ball, spec)
            ax.set_aspect("equal")
            ax.set_xlim(-1.03, 1.03)
            ax.set_ylim(-1.03, 1.03)
            ax.axis("off")
    return fig


def hammer_chart(adata: Any, specs: list[ColorSpec]) -> tuple[Any, str, str]:
    """A sphere latent on the Hammer map: (figure, title, caption)."""
    z = np.asarray(adata.obsm[K.REP])
    first = f" (its first three of {z.shape[1]} coordinates, renormalised onto S²)" \
        if z.shape[1] > 3 else ""
    text = (f"The sphere latent{first} on a Hammer equal-area map: areas, hence the "
            "density of cells, are shown true. Rotated so that the cells' mean direction "
            "is the centre; grid lines every 30°.")
    return sphere_figure(z, specs), "The latent on the sphere", text


def poincare_chart(adata: Any, specs: list[ColorSpec]) -> tuple[Any, str, str]:
    """A hyperbolic latent in the Poincaré disk: (figure, title, caption)."""
    dim = np.asarray(adata.obsm[K.REP]).shape[1] - 1
    first = f" (the first two of its {dim} Poincaré-ball coordinates)" if dim > 2 else ""
    text = (f"The hyperbolic latent in the Poincaré disk{first}, mapped from the Lorentz "
            "coordinates by x ↦ x[1:] / (1 + x[0]). Grey lines are geodesics: the two "
            "diameters and the geodesics crossing them at right angles at hyperbolic "
            "distances 0.5, 1, 2 and 3 from the centre. Distances grow without bound towards "
            "the rim.")
    return poincare_figure(poincare_of(adata), specs), "The latent in the Poincaré disk", text


#: a manifold's chart (`geovae.geometry.Manifold.chart`) -> its picture of the latent
CHARTS = {"hammer": hammer_chart, "poincare": poincare_chart}


# ------------------------------------------------------------------ training
def curves_figure(history: dict[str, Any], best_epoch: int | None) -> Any:
    """-ELBO (train and validation) and each loss term per epoch, the KL warm-up shaded and
    the kept (best) epoch marked. The legend above the panels names what every panel draws;
    a line only some panels draw (validation: the -ELBO only) is named in those panels."""
    train = np.asarray(history.get("train", []), dtype=float)
    validation = np.asarray(history.get("validation", []), dtype=float)
    given = history.get("terms") or {}
    order = [k for k in TERM_NAMES if k in given] + sorted(set(given) - set(TERM_NAMES))
    terms = {k: np.asarray(given[k], dtype=float) for k in order if np.size(given[k])}
    warm = history.get("warmup_epochs")
    n = 1 + len(terms)
    cols = min(n, 3)
    rows = -(-n // cols)
    with style():
        fig = new_figure(4.4 * cols, 3.4 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax in axes[n:]:
            ax.set_visible(False)
        panels = [("−ELBO", {"train": train, "validation": validation})]
        panels += [(TERM_NAMES.get(k, k.replace("_", " ")), {"train": v})
                   for k, v in terms.items()]
        for ax, (title, lines) in zip(axes, panels, strict=False):
            if warm:
                ax.axvspan(0, float(warm), color="#EEEEEE", zorder=0, label="KL warm-up")
            for name, y in lines.items():
                if len(y):
                    ax.plot(np.arange(1, len(y) + 1), y, color=TRAIN if name == "train"
                            else VALIDATION, linewidth=1.8, label=name)
            if best_epoch:
                ax.axvline(best_epoch, color=BEST, linestyle="--", linewidth=1.2,
                           label=f"kept epoch ({best_epoch})")
            ax.set_title(title, fontsize=12)
            ax.set_xlabel("epoch")
            ax.set_xlim(0, max(len(train), 1) + 0.5)
        for ax in axes[::cols]:
            ax.set_ylabel("nats per cell")
        drawn = [dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
                 for ax in axes[:n]]
        common = [label for label in drawn[0] if all(label in d for d in drawn)]
        for ax, d in zip(axes, drawn, strict=False):
            own = [label for label in d if label not in common]
            if own:
                ax.legend([d[label] for label in own], own, frameon=False, loc="upper right",
                          fontsize=10)
        fig.legend([drawn[0][label] for label in common], common, loc="outside lower center",
                   ncol=len(common), frameon=False)  # under the panels, never over a curve
    return fig


# ------------------------------------------------------------------ clusters and labels
def sizes_figure(spec: ColorSpec) -> Any:
    """Cells per cluster, largest first, in the clusters' colours."""
    names, counts = np.unique(spec.values, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    names, counts = names[order], counts[order]
    with style():
        fig = new_figure(7.5, max(2.2, 0.32 * len(names) + 1.2))
        ax = fig.subplots()
        y = np.arange(len(names))
        ax.barh(y, counts, color=[spec.colors.get(str(c), MISSING) for c in names])
        ax.set_yticks(y, [spec.legend_name(str(c)) for c in names])  # "3: CD14 Mono"
        ax.invert_yaxis()
        for yi, c in zip(y, counts, strict=True):
            ax.text(c, yi, f" {c:,} ({c / counts.sum():.1%})", va="center", fontsize=9)
        ax.set_xlim(0, counts.max() * 1.25)
        ax.set_xlabel("cells")
        ax.set_title(f"{spec.title}: {len(names)} groups, {counts.sum():,} cells")
    return fig


def confusion_table(truth: np.ndarray, pred: np.ndarray) -> tuple[list[str], list[str],
                                                                  np.ndarray]:
    """Counts of (known label, prediction) pairs on labelled cells; columns ordered so that
    each label's best match lies near the diagonal."""
    keep = np.array([not is_missing(t) for t in truth], dtype=bool)
    truth, pred = truth[keep], pred[keep]
    rows = sorted(set(truth))
    cols = sorted(set(pred))
    table = np.zeros((len(rows), len(cols)), dtype=int)
    ri, ci = {r: i for i, r in enumerate(rows)}, {c: j for j, c in enumerate(cols)}
    for t, p in zip(truth, pred, strict=True):
        table[ri[t], ci[p]] += 1
    if set(cols) <= set(rows) | {c for c in cols if is_missing(c)}:  # labels vs labels:
        full = rows + [c for c in cols if c not in rows]  # every label, the diagonal right
        grown = np.zeros((len(rows), len(full)), dtype=int)
        for j, c in enumerate(full):
            if c in ci:
                grown[:, j] = table[:, ci[c]]
        return rows, full, grown
    else:  # clusters: by the row of their largest share
        share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
        cols = sorted(cols, key=lambda c: (int(np.argmax(share[:, ci[c]])),
                                           -share[:, ci[c]].max()))
    return rows, cols, table[:, [ci[c] for c in cols]]


def confusion_figure(truth: np.ndarray, pred: np.ndarray, truth_name: str,
                     pred_name: str, title: str | None = None) -> Any:
    """Row-normalised confusion matrix (the fraction of each known label's cells in each
    column), cell counts written in the boxes."""
    rows, cols, table = confusion_table(np.asarray(truth, str), np.asarray(pred, str))
    frac = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    with style():
        fig = new_figure(min(PAGE_WIDTH, max(5.0, 0.55 * len(cols) + 3.5)),
                         max(3.5, 0.42 * len(rows) + 2.2))
        ax = fig.subplots()
        im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        slanted = max(len(str(c)) for c in cols) > 3
        ax.set_xticks(range(len(cols)), [str(c)[:24] for c in cols],
                      rotation=45 if slanted else 0, ha="right" if slanted else "center")
        ax.set_yticks(range(len(rows)), [str(r)[:28] for r in rows])
        ax.spines[:].set_visible(False)
        if table.size <= 600:
            for (i, j), v in np.ndenumerate(table):
                if v:
                    ax.text(j, i, f"{v}", ha="center", va="center", fontsize=9,
                            color="white" if frac[i, j] > 0.55 else "#222222")
        ax.set_xlabel(pred_name)
        ax.set_ylabel(truth_name)
        if title:
            ax.set_title(title)
        fig.colorbar(im, ax=ax, label="fraction of the known label's cells", shrink=0.8)
    return fig


def volume_figure(xy: np.ndarray, volume: np.ndarray) -> Any:
    """The decoder's volume element on the UMAP."""
    with style():
        fig = new_figure(6.4, 4.8)
        ax = fig.subplots()
        scatter_values(fig, ax, xy, volume, title="Decoder volume element",
                       label=r"$\log\sqrt{\det J^{\top}J}$")
        style_embedding(ax)
    return fig


# ------------------------------------------------------------------ transfer
def transfer_figure(ref_xy: np.ndarray, query_xy: np.ndarray, ref_spec: ColorSpec,
                    query_spec: ColorSpec, truth_spec: ColorSpec | None = None) -> Any:
    """Reference and query side by side on the same axes: the reference by its labels, the
    query by its transferred labels (and by its known labels when given) over the
    reference in grey."""
    specs = [ref_spec, query_spec, *([truth_spec] if truth_spec is not None else [])]
    both = np.vstack([ref_xy[:, :2], query_xy[:, :2]])
    lo, hi = both.min(axis=0), both.max(axis=0)
    pad = 0.04 * (hi - lo)
    size = point_size(len(both))
    with style():
        fig, axes = panel_grid(len(specs), specs, ncols=3, max_width=PAGE_WIDTH)
        scatter_categories(axes[0], ref_xy, ref_spec, size=size,
                           title=f"Reference ({len(ref_xy):,} cells): {ref_spec.title.lower()}")
        scatter_categories(axes[1], query_xy, query_spec, background=ref_xy, size=size,
                           title=f"Query ({len(query_xy):,} cells): {query_spec.title.lower()}")
        if truth_spec is not None:
            scatter_categories(axes[2], query_xy, truth_spec, background=ref_xy, size=size,
                               title=f"Query: {truth_spec.title.lower()}")
        for ax in axes:
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            style_embedding(ax)
    return fig


def confidence_figure(confidence: np.ndarray, threshold: float) -> Any:
    """Histogram of the transferred labels' confidence, the unknown threshold marked."""
    c = np.asarray(confidence, dtype=float)
    c = c[np.isfinite(c)]
    with style():
        fig = new_figure(6.4, 3.4)
        ax = fig.subplots()
        bins = np.linspace(0, 1, 41)
        ax.hist(c[c < threshold], bins=bins, color=MISSING, label="called unknown")
        ax.hist(c[c >= threshold], bins=bins, color=OKABE_ITO[0], label="label kept")
        ax.axvline(threshold, color=BEST, linestyle="--",
                   label=f"threshold {threshold:g}")
        ax.set_xlabel("label confidence")
        ax.set_ylabel("query cells")
        ax.set_title(f"Unknown calls: {np.mean(c < threshold):.1%} of {len(c):,} cells")
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig
