"""From AnnData to minibatches: checks, the saved `DataSpec`, prepared arrays, sources."""

from geovae.data.prepare import Prepared, prepare
from geovae.data.sources import DataSource, InMemorySource, make_source, map_batches
from geovae.data.spec import MIN_CELLS, MIN_FEATURES, DataSpec, setup_data

__all__ = ["MIN_CELLS", "MIN_FEATURES", "DataSource", "DataSpec", "InMemorySource", "Prepared",
           "make_source", "map_batches", "prepare", "setup_data"]
