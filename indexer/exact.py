"""Exact (brute-force) search: growing segments and ground truth, with Milvus distance conventions.

Float metrics use faiss's exhaustive kernels (``faiss.knn`` / IndexFlat range search) over the
allowed rows; COSINE normalises vectors and queries and uses the inner product. Binary metrics use
the numpy popcount kernels in `indexer.binary`.
"""

from __future__ import annotations

import faiss
import numpy as np

from indexer.binary import binary_knn, binary_range
from indexer.ranges import (
    RangeResult,
    check_k,
    check_limit,
    check_range,
    empty_knn,
    fix_missing,
    split_faiss_range,
)
from schemas.index_spec import BINARY_METRICS, FLOAT_METRICS, IndexSpecError, is_similarity


def _metric(metric: str) -> str:
    m = str(metric).strip().upper()
    if m not in FLOAT_METRICS + BINARY_METRICS:
        raise IndexSpecError(
            f"metric {metric!r} is not supported; use one of {', '.join(FLOAT_METRICS + BINARY_METRICS)}"
        )
    return m


def faiss_metric(metric: str) -> int:
    """faiss metric constant for a float Milvus metric (COSINE searches normalised data by IP)."""
    return faiss.METRIC_L2 if metric == "L2" else faiss.METRIC_INNER_PRODUCT


def as_queries(queries, binary: bool, width: int) -> np.ndarray:
    """2-D C-contiguous float32 / uint8 query matrix; `width` is dim (float) or dim / 8 (binary)."""
    q = np.asarray(queries, dtype=np.uint8 if binary else np.float32)
    if q.ndim == 1:
        q = q.reshape(1, -1)
    if q.ndim != 2 or q.shape[1] != width:
        unit = "bytes" if binary else "floats"
        raise IndexSpecError(f"queries of shape {q.shape} do not match vectors of {width} {unit}")
    return np.ascontiguousarray(q)


def normalized(x: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy (zero rows stay zero)."""
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    if out.size:
        faiss.normalize_L2(out)
    return out


def _prepare(vectors, queries, metric: str, allowed):
    binary = metric in BINARY_METRICS
    x = np.ascontiguousarray(vectors, dtype=np.uint8 if binary else np.float32)
    if x.ndim != 2:
        raise IndexSpecError(f"vectors must be 2-D, got shape {x.shape}")
    q = as_queries(queries, binary, x.shape[1])
    mask = None
    if allowed is not None:
        mask = np.asarray(allowed, dtype=bool)
        if mask.shape != (x.shape[0],):
            raise IndexSpecError(f"allowed has shape {mask.shape}, expected ({x.shape[0]},)")
        if mask.all():
            mask = None
    return binary, x, q, mask


def brute_force_search(
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k: (distances float32 (nq, k), labels int64 (nq, k)); labels are row positions, -1 for none."""
    metric = _metric(metric)
    k = check_k(k)
    binary, x, q, mask = _prepare(vectors, queries, metric, allowed)
    if binary:
        return binary_knn(x, q, k, metric, mask)
    rows = None
    if mask is not None:
        rows = np.flatnonzero(mask)
        x = x[rows]
    if x.shape[0] == 0 or q.shape[0] == 0:
        return empty_knn(q.shape[0], k, is_similarity(metric))
    if metric == "COSINE":
        x, q = normalized(x), normalized(q)
    d, labels = faiss.knn(q, x, k, metric=faiss_metric(metric))
    if rows is not None:
        labels = np.where(labels >= 0, rows[np.maximum(labels, 0)], -1)
    return fix_missing(d, labels, is_similarity(metric))


def brute_force_range_search(
    vectors: np.ndarray,
    queries: np.ndarray,
    metric: str,
    radius: float,
    range_filter: float | None = None,
    allowed: np.ndarray | None = None,
    limit: int | None = None,
) -> list[RangeResult]:
    """Exact range search with Milvus boundary rules; one (distances, labels) pair per query, best first."""
    metric = _metric(metric)
    radius, range_filter = check_range(metric, radius, range_filter)
    limit = check_limit(limit)
    binary, x, q, mask = _prepare(vectors, queries, metric, allowed)
    if binary:
        return binary_range(x, q, metric, radius, range_filter, limit, mask)
    rows = None
    if mask is not None:
        rows = np.flatnonzero(mask)
        x = x[rows]
    if x.shape[0] == 0:
        empty = (np.zeros(0, np.float32), np.zeros(0, np.int64))
        return [empty for _ in range(q.shape[0])]
    if metric == "COSINE":
        x, q = normalized(x), normalized(q)
    index = faiss.IndexFlat(x.shape[1], faiss_metric(metric))
    index.add(x)
    lims, d, labels = index.range_search(q, radius)
    return split_faiss_range(lims, d, labels, metric, radius, range_filter, limit, rows)


__all__ = ["brute_force_search", "brute_force_range_search", "faiss_metric", "as_queries", "normalized"]
