"""Pictures and reports of a run.

``geovae.report(adata, "report.html")`` writes the HTML report (`geovae.report.html.report`):
this package is itself callable, so the verb and the package share the name ``report``.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

from geovae.report.html import report
from geovae.report.plot import PLOT_FORMATS, umap_figure

__all__ = ["PLOT_FORMATS", "report", "umap_figure"]


class _CallableModule(types.ModuleType):
    """``geovae.report(...)`` calls `geovae.report.html.report` (``import geovae.report``
    binds the package, not the function, to ``geovae.report``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return report(*args, **kwargs)


_module = sys.modules[__name__]
_module.__class__ = _CallableModule
_module.__signature__ = inspect.signature(report)  # type: ignore[attr-defined]
_module.__doc__ = f"{__doc__}\n{report.__doc__}"
