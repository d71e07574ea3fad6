"""Running one search or query over a loaded collection's snapshot.

Every request check happens here, once: the vector field, topk + offset and nq limits, the
query vectors, the metric against the index, the filter, the partitions. The gateway only
turns Milvus's messages into requests. ``req.shards`` narrows a read to some of the shards held
(a gateway scattering over several searchers); the answer says which shards it read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from schemas.exceptions import InvalidArgument, LimitExceeded
from schemas.scalar_index import scalar_sources
from schemas.sparse import drop_small
from schemas.sparse_index_spec import drop_ratio_search
from searcher.aggregation import aggregate
from searcher.collection import LoadedCollection
from searcher.consistency import ReadBarrier, Snapshot
from searcher.grouping import Neighbours, View, grouped_hits
from searcher.query import COUNT, output_columns, query_rows
from searcher.requests import (
    check_partitions,
    check_queries,
    compiled_filter,
    empty_table,
    only_vector_field,
    split_hits,
    without_dropped,
)
from searcher.search import container_mask, knn, pruned, range_knn, resolve_metric, with_vectors
from searcher.sparse_search import bm25_counts, sparse_knn
from walvus.searcher import Hits, QueryRequest, SearchRequest

MAX_TOPK = 16_384


def search(
    coll: LoadedCollection, req: SearchRequest, barrier: ReadBarrier, ef_search: int
) -> tuple[list[Hits], frozenset[int], str]:
    """``req``'s hits, the shards it read (those of ``req.shards`` held here) and its metric."""
    info = coll.info
    shards_read = served(coll, req.shards)
    field_name = req.anns_field or only_vector_field(info)
    f = info.schema.field(field_name)
    if f is None or not f.dtype.is_vector:
        raise InvalidArgument(f"field {field_name} is not a vector field of collection {info.name}")
    k = req.limit + req.offset
    if req.limit < 1 or k > MAX_TOPK:
        raise LimitExceeded(f"topk + offset must be between 1 and {MAX_TOPK}, got {k}")
    if len(req.queries) > MAX_TOPK:
        raise LimitExceeded(f"nq must be at most {MAX_TOPK}, got {len(req.queries)}")
    queries = check_queries(req.queries, f)
    if not f.dtype.is_sparse and "drop_ratio_search" in req.params:
        raise InvalidArgument(
            f"search param drop_ratio_search is for sparse vector fields, not {f.dtype.name}"
        )
    metric = resolve_metric(info, field_name, req.metric)
    flt = compiled_filter(info, req.filter, req.filter_params)
    sources = scalar_sources(info.schema, info.indexes) if flt is not None else frozenset()
    requested = check_partitions(info, req.partitions, flt)
    cols, _dyn = output_columns(info.schema, req.output_fields)

    def run(snapshot: Snapshot) -> list[Hits]:
        partitions = without_dropped(info, requested, snapshot)
        snapshot = in_shards(snapshot, req.shards)
        view = [
            (c, with_vectors(c, container_mask(c, alive, flt, partitions, sources), f))
            for c, alive in snapshot
            if not (req.ignore_growing and not c.sealed) and not pruned(c, partitions)
        ]
        everything = list(snapshot) if f.dtype.is_sparse and metric == "BM25" else []
        coll.scanned_rows += sum(c.num_rows for c, _ in view)
        interim = coll.interim.lookup(field_name)

        def neighbours(view: View, q: np.ndarray, kk: int) -> Neighbours:
            if f.dtype.is_sparse:
                return sparse_knn(
                    view, everything, info, field_name, q, kk, metric, req.params, req.bm25_stats
                )
            if "radius" in req.params:
                return range_knn(view, info.schema, field_name, q, kk, metric, req.params)
            ef = ef_search
            return knn(view, info.schema, field_name, q, kk, metric, req.params, interim, ef)

        if req.group_by_field:
            return grouped_hits(view, info, queries, req, cols, neighbours)
        d, refs, used = neighbours(view, queries, k)
        return split_hits(info, used, d[:, req.offset :], refs[:, req.offset :], cols, req.round_decimal)

    return barrier.read(coll, req.consistency, run), shards_read, metric


def bm25_sums(
    coll: LoadedCollection, req: SearchRequest, barrier: ReadBarrier
) -> list[tuple[int, float, list[float]]]:
    """BM25 statistics of ``req``'s queries over the live rows of the shards held here (a
    gateway sums them over every shard, then searches with the sums)."""
    field_name = req.anns_field or only_vector_field(coll.info)
    idx = coll.info.indexes.get(field_name)
    drop_build = float((idx.params if idx else {}).get("drop_ratio_build", 0.0) or 0.0)
    ratio = drop_ratio_search(req.params, InvalidArgument)
    qs = [drop_small(q, ratio) for q in req.queries.items]  # type: ignore[attr-defined]

    def run(snapshot: Snapshot) -> list[tuple[int, float, list[float]]]:
        counts = bm25_counts(in_shards(snapshot, req.shards), field_name, drop_build, qs)
        return [(n, total, df.tolist()) for n, total, df in counts]

    return barrier.read(coll, req.consistency, run)


def query(coll: LoadedCollection, req: QueryRequest, barrier: ReadBarrier) -> tuple[pa.Table, frozenset[int]]:
    """``req``'s rows and the shards it read (those of ``req.shards`` held here)."""
    info = coll.info
    shards_read = served(coll, req.shards)
    flt = compiled_filter(info, req.filter, req.filter_params)
    sources = scalar_sources(info.schema, info.indexes) if flt is not None else frozenset()
    requested = check_partitions(info, req.partitions, flt)
    grouping = bool(req.group_by_fields or req.aggregates)
    wants_count = COUNT in req.output_fields and not grouping
    aggregated = [a.field for a in req.aggregates if a.field is not None]
    cols, _dyn = output_columns(info.schema, [*req.output_fields, *req.group_by_fields, *aggregated])
    ids = req.ids
    pk = info.schema.primary.name
    if ids is None and flt is not None:
        vals = flt.values_for(pk)
        if vals is not None and len(vals) <= 100_000:
            ids = list(vals)

    def run(snapshot: Snapshot) -> tuple[Any, int]:
        partitions = without_dropped(info, requested, snapshot)
        view = [
            (c, a)
            for c, a in in_shards(snapshot, req.shards)
            if not (req.ignore_growing and not c.sealed) and not pruned(c, partitions)
        ]
        limit, offset = (None, 0) if grouping else (req.limit, req.offset)  # grouping pages groups
        return query_rows(view, pk, flt, ids, partitions, cols, limit, offset, wants_count, sources)

    result, scanned = barrier.read(coll, req.consistency, run)
    coll.scanned_rows += scanned
    if wants_count:
        return pa.table({COUNT: pa.array([result], pa.int64())}), shards_read
    assert isinstance(result, pa.Table)
    if result.num_columns == 0:
        result = empty_table(info, list(dict.fromkeys([pk, *cols])))
    if grouping:
        out = aggregate(result, req.group_by_fields, req.aggregates)
        out = out.slice(req.offset, req.limit) if req.limit is not None else out.slice(req.offset)
        return out, shards_read
    return result, shards_read


def served(coll: LoadedCollection, shards: frozenset[int] | None) -> frozenset[int]:
    held = frozenset(coll.shards)
    return held if shards is None else held & shards


def in_shards(snapshot: Snapshot, shards: frozenset[int] | None) -> Snapshot:
    return snapshot if shards is None else [(c, a) for c, a in snapshot if c.shard in shards]


__all__ = ["MAX_TOPK", "bm25_sums", "in_shards", "query", "search", "served"]
