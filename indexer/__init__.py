"""Vector index layer: Milvus index types and search semantics over faiss, on numpy arrays.

This package's root is the indexer's declared interface: the search kernels, pure functions and
classes with no Kafka or Delta dependencies, which the searchers search with. Other stages import
them from here, never from the modules below (``tests/unit/test_layering.py``). Index specs,
parsed and validated, are part of the data model: ``schemas.index_spec``.

* `VectorIndex.build / search / range_search / save / load` - one index per sealed segment;
  labels are row positions in the segment. GPU_* types need a GPU to build
  (`GpuUnavailableError`, ``walvus.gpu``).
* `brute_force_search` / `brute_force_range_search` - exact search for growing data and tests.
* `InterimBuilder` / `InterimIndex` - graphs over growing rows, so they are searched at indexed
  speed before a segment seals; `single_threaded_adds` keeps their builds off the query threads.
* `SparseIndex` / `Bm25Stats` - the sparse inverted index and BM25 statistics.
* `topk` / `check_range` - merging hits across containers and range-search bounds.
* vectors arrive as index-ready arrays (``schemas.vector_arrays``).
"""

from indexer.exact import brute_force_range_search, brute_force_search
from indexer.index import SPARSE_FILTER_FRACTION, SPARSE_FILTER_ROWS, RowFilter, VectorIndex
from indexer.interim import InterimBuilder, InterimIndex, single_threaded_adds
from indexer.ranges import RangeResult, check_range, topk
from indexer.sparse import Bm25Stats, SparseIndex

__all__ = [
    "SPARSE_FILTER_FRACTION",
    "SPARSE_FILTER_ROWS",
    "Bm25Stats",
    "InterimBuilder",
    "InterimIndex",
    "RangeResult",
    "RowFilter",
    "SparseIndex",
    "VectorIndex",
    "brute_force_range_search",
    "brute_force_search",
    "check_range",
    "single_threaded_adds",
    "topk",
]
