"""Vector index layer: Milvus index types and search semantics over faiss, on numpy arrays.

Pure functions and classes with no Kafka or Delta dependencies:

* `IndexSpec.parse` validates a CreateIndex request (index type, metric, build params) and fills
  Milvus defaults; errors are `IndexSpecError` (`GpuUnavailableError` for GPU_* without a GPU).
* `VectorIndex.build / search / range_search / save / load` - one index per sealed segment;
  labels are row positions in the segment.
* `brute_force_search` / `brute_force_range_search` - exact search for growing data and tests.
* `convert_vectors` - FLOAT16 / BFLOAT16 / FLOAT / BINARY payloads to index-ready arrays.
"""

from indexer.convert import convert_vectors
from indexer.exact import brute_force_range_search, brute_force_search
from indexer.gpu import gpu_available
from indexer.index import RowFilter, VectorIndex
from indexer.ranges import RangeResult
from indexer.spec import (
    BINARY_INDEX_TYPES,
    BINARY_METRICS,
    FLOAT_INDEX_TYPES,
    FLOAT_METRICS,
    GPU_INDEX_TYPES,
    INDEX_TYPES,
    VECTOR_TYPES,
    GpuUnavailableError,
    IndexSpec,
    IndexSpecError,
    is_similarity,
)

__all__ = [
    "BINARY_INDEX_TYPES",
    "BINARY_METRICS",
    "FLOAT_INDEX_TYPES",
    "FLOAT_METRICS",
    "GPU_INDEX_TYPES",
    "INDEX_TYPES",
    "VECTOR_TYPES",
    "GpuUnavailableError",
    "IndexSpec",
    "IndexSpecError",
    "RangeResult",
    "RowFilter",
    "VectorIndex",
    "brute_force_range_search",
    "brute_force_search",
    "convert_vectors",
    "gpu_available",
    "is_similarity",
]
