"""The report's cluster names: each cluster's majority known label and top marker genes
(``uns['geovae']['cluster_names']``, written by `geovae.tools.markers.name_clusters`)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from geovae import _keys as K
from geovae.report.sections import Context, Section


def names_table(ctx: Context) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) of the names table: cluster, cells, majority label and its share,
    top marker genes; None where the record has no names."""
    info = ctx.info.get("cluster_names")
    if not isinstance(info, dict) or "cluster" not in info:
        return None
    clusters = [str(c) for c in np.atleast_1d(info["cluster"])]
    counts = ctx.adata.obs[K.CLUSTER].astype(str).value_counts() \
        if K.CLUSTER in ctx.adata.obs else {}
    labels = [str(v) for v in np.atleast_1d(info.get("label", []))]
    shares = [float(v) for v in np.atleast_1d(info.get("label_share", []))]
    markers = [str(v) for v in np.atleast_1d(info.get("markers", []))]
    header = ["cluster", "cells"]
    if labels:
        header.append(f"majority label ({info.get('label_key')}), share of its labelled cells")
    header.append("top marker genes")
    rows = []
    for i, c in enumerate(clusters):
        row = [c, f"{int(counts.get(c, 0)):,}"]
        if labels:
            row.append(f"{labels[i]} ({shares[i]:.0%})" if labels[i] else "none labelled")
        row.append(markers[i] if i < len(markers) and markers[i] else "–")
        rows.append(row)
    return header, rows


def names_section(ctx: Context) -> Section | None:
    table = names_table(ctx)
    if table is None:
        return None
    header, rows = table
    specs = ctx.specs([K.CLUSTER])
    colors = specs[0].colors if specs else {}
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + f'<td><span class="swatch" style="background:{colors.get(r[0], "#BBBBBB")}">'
        "</span>" + html.escape(r[0]) + "</td>"
        + "".join(f"<td>{html.escape(v)}</td>" for v in r[1:]) + "</tr>" for r in rows)
    info = ctx.info["cluster_names"]
    how = info.get("markers_from") if isinstance(info.get("markers_from"), dict) else None
    text = ("Each cluster's most frequent known label among its labelled cells, and its top "
            "marker genes")
    if how:
        text += (f": scanpy's rank_genes_groups ({how.get('method', 't-test')}, each cluster "
                 f"against the rest) on {how.get('expression')}, "
                 f"{int(how.get('n_cells', 0)):,} cells (seed {how.get('seed', 0)}); stored "
                 f"in uns['{how.get('key')}'], so sc.pl.rank_genes_groups(adata"
                 + ("" if how.get("key") == "rank_genes_groups" else f", key='{how.get('key')}'")
                 + ") draws it.")
    else:
        text += " (no marker genes: the expression was not in memory, e.g. --backed)."
    parts = [f'<table class="names"><tr>{head}</tr>{body}</table>'
             f"<p class=\"caption\">{html.escape(text)} obs['geovae_cluster_name'] holds "
             "each cell's cluster name.</p>"]
    dots = info.get("dotplot")
    if isinstance(dots, dict) and np.size(dots.get("genes", [])):
        names = {r[0]: r[2].rsplit(" (", 1)[0] if len(r) > 3 else "" for r in rows}
        median = dots.get("fraction_of") == "above_median"
        size = ("above the feature's median over all ranked cells (the matrix is no "
                "expression, e.g. standardised: above 0 would mean above its mean)" if median
                else "expressing the gene")
        colour = "mean value" if median else "mean log-normalised expression"
        parts.append(ctx.figure(dot_figure(dots, names), "Top two marker genes of each "
                                f"cluster: dot size, the fraction of the cluster's cells "
                                f"{size}; colour, its {colour} there, scaled from 0 (the "
                                "gene's lowest cluster) to 1 (its highest); same cells as "
                                "the ranking.", "Marker genes per cluster"))
    return Section("names", "Cluster names", "".join(parts), len(parts) - 1)


def dot_figure(dots: dict[str, Any], labels: dict[str, str]) -> Any:
    """scanpy-style dot plot: clusters (rows, with their majority label) by genes."""
    from geovae.report.palette import PAGE_WIDTH, new_figure, style

    groups = [str(g) for g in np.atleast_1d(dots["groups"])]
    genes = [str(g) for g in np.atleast_1d(dots["genes"])]
    fraction, mean = np.asarray(dots["fraction"], float), np.asarray(dots["mean"], float)
    low, high = mean.min(axis=0), mean.max(axis=0)
    mean = (mean - low) / np.where(high > low, high - low, 1.0)  # per gene, as scanpy's
    # standard_scale="var": where each gene is highest, not which genes are abundant
    with style():
        fig = new_figure(min(PAGE_WIDTH, 3.5 + 0.32 * len(genes)), 1.6 + 0.3 * len(groups))
        ax = fig.subplots()
        yy, xx = np.meshgrid(np.arange(len(groups)), np.arange(len(genes)), indexing="ij")
        dots_ = ax.scatter(xx.ravel(), yy.ravel(), s=(fraction.ravel() * 14) ** 2,
                           c=mean.ravel(), cmap="Reds", vmin=0, vmax=1, edgecolors="#555555",
                           linewidths=0.3)
        ax.set_xticks(range(len(genes)), genes, rotation=90)
        ax.set_yticks(range(len(groups)),
                      [f"{g}: {labels.get(g)}" if labels.get(g) else g for g in groups])
        ax.invert_yaxis()
        ax.set_xlim(-0.6, len(genes) - 0.4)
        ax.spines[:].set_visible(False)
        ax.grid(True, color="#EEEEEE", linewidth=0.6)
        ax.set_axisbelow(True)
        median = dots.get("fraction_of") == "above_median"
        fig.colorbar(dots_, ax=ax, label=f"mean {'value' if median else 'expression'}\n"
                     "(0-1 per gene)", shrink=0.5)
        for f in (0.25, 0.5, 1.0):
            ax.scatter([], [], s=(f * 14) ** 2, c="#888888", label=f"{f:.0%}")
        ax.legend(title="cells above median" if median else "cells expressing",
                  loc="upper left", bbox_to_anchor=(1.2, 0.0), frameon=False,
                  labelspacing=1.0)
    return fig
