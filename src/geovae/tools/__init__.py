"""Scanpy-style verbs over one AnnData: ``fit``, ``embed``, ``transfer``, ``cluster``."""

from geovae.tools.cluster import cluster
from geovae.tools.fit import embed, fit
from geovae.tools.transfer import transfer

__all__ = ["cluster", "embed", "fit", "transfer"]
