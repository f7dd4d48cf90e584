"""Synthetic data with known structure: NB counts (`simulate_counts`) and conditional blobs."""

from geovae.datasets.blobs import make_blobs
from geovae.datasets.simulate import simulate_counts

__all__ = ["make_blobs", "simulate_counts"]
