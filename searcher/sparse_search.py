"""Top-k over SPARSE_FLOAT_VECTOR fields: IP, or BM25 with the collection's live statistics.

Every container (sealed segment or growing chunk) is scanned through its in-memory inverted
index (``indexer/sparse.py``), exactly, with the same live, filter and partition masks as dense
search; the per-container top-k lists then merge. For BM25, N, avgdl and each query term's
document frequency are summed over every live row the snapshot holds (all partitions, whatever
the filter), so they follow deletes and upserts at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from indexer import Bm25Stats, check_range, topk
from schemas.exceptions import InvalidArgument
from schemas.sparse import SparseQueries, drop_small
from schemas.sparse_index_spec import drop_ratio_search
from searcher.segment import Container


def sparse_knn(
    view: list[tuple[Container, np.ndarray]],
    everything: Sequence[tuple[Container, np.ndarray]],
    info: Any,
    field_name: str,
    queries: SparseQueries,
    k: int,
    metric: str,
    params: dict[str, Any],
    given_stats: list[tuple[int, float, list[float]]] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Container]]:
    """Global top-k like ``searcher.search.knn``: scores (nq, k), refs into ``used``'s rows."""
    idx = info.indexes.get(field_name)
    build = dict(idx.params) if idx is not None else {}
    drop_build = float(build.get("drop_ratio_build", 0.0) or 0.0)
    ratio = drop_ratio_search(params, InvalidArgument)
    qs = [drop_small(q, ratio) for q in queries.items]
    bounds = None
    if "radius" in params:  # range search: larger scores are better, as for IP
        bounds = check_range("IP", params["radius"], params.get("range_filter"))
    stats = None
    k1, b = float(build.get("bm25_k1", 1.2)), float(build.get("bm25_b", 0.75))
    if metric == "BM25" and given_stats is not None:  # summed over every shard by the gateway
        stats = [
            Bm25Stats(n, total / n if n else 1.0, np.asarray(df, np.float64)) for n, total, df in given_stats
        ]
    elif metric == "BM25":
        stats = bm25_stats(everything, field_name, drop_build, qs)
    nq = len(qs)
    parts_d, parts_i, used, base = [], [], [], 0
    for c, mask in view:
        n_allowed = c.count(mask)
        if n_allowed == 0:
            continue
        used.append(c)
        c_base, base = base, base + c.num_rows
        allowed = None if n_allowed == c.num_rows else mask
        d, labels = c.sparse_index(field_name, drop_build).search(
            qs, min(k, n_allowed), allowed, stats, k1, b, bounds
        )
        parts_d.append(d)
        parts_i.append(np.where(labels >= 0, labels + c_base, -1))
    if not parts_d:
        return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64), used
    dists = np.concatenate(parts_d, axis=1)
    refs_all = np.concatenate(parts_i, axis=1)
    d, cols = topk(dists, k, True)
    refs = np.where(cols >= 0, np.take_along_axis(refs_all, np.maximum(cols, 0), axis=1), -1)
    refs = np.where(np.isfinite(d), refs, -1)
    return d, refs, used


def bm25_stats(
    everything: Sequence[tuple[Container, np.ndarray]],
    field_name: str,
    drop_build: float,
    queries: list[tuple[np.ndarray, np.ndarray]],
) -> list[Bm25Stats]:
    """Per query: live document count, average length and each term's document frequency."""
    return [
        Bm25Stats(n, total / n if n else 1.0, df)
        for n, total, df in bm25_counts(everything, field_name, drop_build, queries)
    ]


def bm25_counts(
    everything: Sequence[tuple[Container, np.ndarray]],
    field_name: str,
    drop_build: float,
    queries: list[tuple[np.ndarray, np.ndarray]],
) -> list[tuple[int, float, np.ndarray]]:
    """Per query: live document count, total length and each term's document frequency (sums
    that add up across shards)."""
    num_docs, total_len = 0, 0.0
    df = [np.zeros(len(q[0]), np.float64) for q in queries]
    for c, alive in everything:
        n = c.count(alive)
        if n == 0:
            continue
        si = c.sparse_index(field_name, drop_build)
        num_docs += n
        total_len += si.live_length(alive)
        for qi, (terms, _) in enumerate(queries):
            df[qi] += si.doc_freq(terms, alive)
    return [(num_docs, total_len, d) for d in df]
