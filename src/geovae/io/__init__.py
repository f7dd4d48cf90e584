"""Reading inputs and writing outputs (atomic files, staged output sets)."""

from geovae.io.read import input_stem, read
from geovae.io.write import OutputSet, atomic_dir, atomic_path, write_h5ad

__all__ = ["OutputSet", "atomic_dir", "atomic_path", "input_stem", "read", "write_h5ad"]
