"""Scanpy-style verbs over one AnnData: ``fit``, ``embed``, ``cluster``."""

from geovae.tools.cluster import cluster
from geovae.tools.fit import embed, fit

__all__ = ["cluster", "embed", "fit"]
