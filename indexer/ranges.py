"""Result conventions shared by the indexes and brute force: top-k, missing slots, range rules.

Distances follow Milvus: L2 is squared L2, IP the inner product, COSINE the cosine similarity,
HAMMING a bit count, JACCARD the Jaccard distance; IP and COSINE are better when larger. A missing
result has label -1 and distance +inf (or -inf where larger is better), so segment results merge.

Range search keeps ``range_filter <= d < radius`` for L2, HAMMING and JACCARD and
``radius < d <= range_filter`` for IP and COSINE (range_filter optional), sorted best first.
"""

from __future__ import annotations

import math

import numpy as np

from schemas.index_spec import IndexSpecError, is_similarity

RangeResult = tuple[np.ndarray, np.ndarray]


def fix_missing(distances: np.ndarray, labels: np.ndarray, similarity: bool) -> tuple[np.ndarray, np.ndarray]:
    """Cast to (float32, int64) and give every label -1 the distance -inf/+inf."""
    distances = np.asarray(distances, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    missing = labels < 0
    if missing.any():
        distances = distances.copy() if not distances.flags.writeable else distances
        distances[missing] = -np.inf if similarity else np.inf
    return distances, labels


def empty_knn(nq: int, k: int, similarity: bool) -> tuple[np.ndarray, np.ndarray]:
    """All-missing (nq, k) result."""
    return (
        np.full((nq, k), -np.inf if similarity else np.inf, dtype=np.float32),
        np.full((nq, k), -1, dtype=np.int64),
    )


def topk(
    dist: np.ndarray, k: int, similarity: bool, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Best k per row of an (nq, m) distance matrix, sorted, padded with missing slots.

    Labels are column positions, or ``rows[column]`` when `rows` is given.
    """
    nq, m = dist.shape
    out_d, out_i = empty_knn(nq, k, similarity)
    if m == 0:
        return out_d, out_i
    key = -dist if similarity else dist
    kk = min(k, m)
    part = np.argpartition(key, kk - 1, axis=1)[:, :kk] if kk < m else np.broadcast_to(np.arange(m), (nq, m))
    part_key = np.take_along_axis(key, part, axis=1)
    srt = np.argsort(part_key, axis=1, kind="stable")
    cols = np.take_along_axis(part, srt, axis=1)
    out_d[:, :kk] = np.take_along_axis(dist, cols, axis=1)
    out_i[:, :kk] = cols if rows is None else rows[cols]
    return out_d, out_i


def check_range(metric: str, radius: float, range_filter: float | None) -> tuple[float, float | None]:
    """Validate radius / range_filter for `metric` (Milvus rules) and return them as floats."""
    try:
        radius = float(radius)
        range_filter = None if range_filter is None else float(range_filter)
    except (TypeError, ValueError) as exc:
        raise IndexSpecError(f"radius={radius!r} and range_filter={range_filter!r} must be numbers") from exc
    if math.isnan(radius) or (range_filter is not None and math.isnan(range_filter)):
        raise IndexSpecError("radius and range_filter must not be NaN")
    if range_filter is not None:
        if is_similarity(metric) and not range_filter > radius:
            raise IndexSpecError(
                f"metric {metric}: range_filter={range_filter} must be greater than radius={radius}"
            )
        if not is_similarity(metric) and not range_filter < radius:
            raise IndexSpecError(
                f"metric {metric}: range_filter={range_filter} must be less than radius={radius}"
            )
    return radius, range_filter


def in_range(d: np.ndarray, metric: str, radius: float, range_filter: float | None) -> np.ndarray:
    """Boolean mask of distances inside the Milvus range."""
    if is_similarity(metric):
        keep = d > radius
        if range_filter is not None:
            keep &= d <= range_filter
    else:
        keep = d < radius
        if range_filter is not None:
            keep &= d >= range_filter
    return keep


def select_range(
    d: np.ndarray,
    labels: np.ndarray,
    metric: str,
    radius: float,
    range_filter: float | None,
    limit: int | None,
) -> RangeResult:
    """Filter one query's candidates by the range rules; sort best first; keep at most `limit`."""
    keep = in_range(d, metric, radius, range_filter) & (labels >= 0)
    d = np.asarray(d[keep], dtype=np.float32)
    labels = np.asarray(labels[keep], dtype=np.int64)
    key = -d if is_similarity(metric) else d
    if limit is not None and len(key) > limit:
        # the same rows and order as a full stable sort cut at `limit`, without sorting everything
        kth = np.partition(key, limit - 1)[limit - 1]
        below = np.flatnonzero(key < kth)
        tied = np.flatnonzero(key == kth)[: limit - len(below)]
        pick = np.sort(np.concatenate([below, tied]))
        order = pick[np.argsort(key[pick], kind="stable")]
    else:
        order = np.argsort(key, kind="stable")
        if limit is not None:
            order = order[:limit]
    return d[order], labels[order]


def split_faiss_range(
    lims: np.ndarray,
    d: np.ndarray,
    labels: np.ndarray,
    metric: str,
    radius: float,
    range_filter: float | None,
    limit: int | None,
    rows: np.ndarray | None = None,
) -> list[RangeResult]:
    """Turn a faiss RangeSearchResult (lims, D, I) into per-query sorted results."""
    if rows is not None:
        labels = rows[labels]
    return [
        select_range(
            d[lims[i] : lims[i + 1]], labels[lims[i] : lims[i + 1]], metric, radius, range_filter, limit
        )
        for i in range(len(lims) - 1)
    ]


def check_k(k: int) -> int:
    """Validate a top-k value."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise IndexSpecError(f"k={k!r} must be a positive integer")
    return int(k)


def check_limit(limit: int | None) -> int | None:
    """Validate an optional range-search result limit."""
    return None if limit is None else check_k(limit)
