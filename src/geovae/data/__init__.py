"""From AnnData to minibatches: checks, the saved `DataSpec`, prepared arrays, sources.

One path for a matrix in memory and one on disk (`geovae.data.setup`); modules import in one
direction: checks, h5, batch → spec → prepare → sources, backed → setup.
"""

from geovae.data.checks import auto_likelihood, value_kind
from geovae.data.prepare import Prepared
from geovae.data.setup import check_names, make_source, prepare, setup_data
from geovae.data.sources import DataSource, InMemorySource, map_batches
from geovae.data.spec import MIN_CELLS, MIN_FEATURES, DataSpec

__all__ = ["MIN_CELLS", "MIN_FEATURES", "DataSource", "DataSpec", "InMemorySource", "Prepared",
           "auto_likelihood", "check_names", "make_source", "map_batches", "prepare",
           "setup_data", "value_kind"]
