"""Vector index layer: Milvus index types and search semantics over faiss, on numpy arrays.

Pure functions and classes with no Kafka or Delta dependencies (index specs, parsed and validated,
are part of the data model: ``schemas.index_spec``):

* `VectorIndex.build / search / range_search / save / load` - one index per sealed segment;
  labels are row positions in the segment. GPU_* types need a GPU to build
  (`GpuUnavailableError`, ``walvus.gpu``).
* `brute_force_search` / `brute_force_range_search` - exact search for growing data and tests.
* vectors arrive as index-ready arrays (``schemas.vector_arrays``).
"""

from indexer.exact import brute_force_range_search, brute_force_search
from indexer.index import RowFilter, VectorIndex
from indexer.ranges import RangeResult

__all__ = [
    "RangeResult",
    "RowFilter",
    "VectorIndex",
    "brute_force_range_search",
    "brute_force_search",
]
