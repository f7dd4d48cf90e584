"""Pictures and reports of a run."""

from geovae.report.plot import PLOT_FORMATS, umap_figure

__all__ = ["PLOT_FORMATS", "umap_figure"]
