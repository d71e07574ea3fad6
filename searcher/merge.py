"""Combining the answers of several searchers, each for some shards, into one answer.

Each shard's searcher answers for ``offset + limit`` hits (or groups, or rows) from offset 0; the
merge orders them as one searcher holding every shard would, then pages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.index_spec import is_similarity
from searcher.aggregation import aggregate
from searcher.query import COUNT
from searcher.requests import group_positions
from walvus.searcher import Hits, QueryRequest, SearchRequest


def _concat(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_columns]
    if not tables:
        return pa.table({})
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.concat_tables(tables, promote_options="permissive")


def merge_hits(parts: list[list[Hits]], nq: int, metric: str, req: SearchRequest) -> list[Hits]:
    """One query's hits from every part, best first, then ``req``'s page (groups when grouping)."""
    if len(parts) == 1 and len(parts[0]) == nq and not req.offset and not req.group_by_field:
        return parts[0]  # one searcher read every shard: its answer is ordered and paged already
    desc = is_similarity(metric) if metric else False
    out = []
    for qi in range(nq):
        mine = [p[qi] for p in parts if qi < len(p)]
        ids: list[Any] = [i for h in mine for i in h.ids]
        dist = (
            np.concatenate([np.asarray(h.distances, np.float32) for h in mine])
            if mine
            else np.zeros(0, np.float32)
        )
        fields = _concat([h.fields for h in mine if len(h.ids)])
        order = np.argsort(-dist if desc else dist, kind="stable")
        if req.group_by_field:
            values = fields.column(req.group_by_field).take(pa.array(order)).to_pylist() if len(order) else []
            pos, _ = group_positions(
                values, req.limit, req.offset, max(1, req.group_size), req.strict_group_size
            )
            order = order[np.asarray(pos, dtype=np.int64)] if len(pos) else order[:0]
        else:
            order = order[req.offset : req.offset + req.limit]
        take = pa.array(order, pa.int64())
        out.append(
            Hits(
                [ids[i] for i in order],
                dist[order],
                fields.take(take) if fields.num_columns else pa.table({}),
            )
        )
    return out


def shard_query(req: QueryRequest) -> QueryRequest:
    """What each shard's searcher is asked for a query."""
    from dataclasses import replace

    if req.group_by_fields or req.aggregates:  # the rows' keys and inputs; the gateway aggregates
        sources = [a.field for a in req.aggregates if a.field is not None]
        columns = list(dict.fromkeys([*req.group_by_fields, *sources]))
        return replace(req, group_by_fields=[], aggregates=[], output_fields=columns, limit=None, offset=0)
    if COUNT in req.output_fields:
        return req
    return replace(req, limit=None if req.limit is None else req.limit + req.offset, offset=0)


def merge_rows(tables: list[pa.Table], req: QueryRequest, pk: str) -> pa.Table:
    """The shards' rows as one searcher's answer to ``req`` (``shard_query`` made the parts)."""
    if req.group_by_fields or req.aggregates:
        grouped = aggregate(_concat(tables), req.group_by_fields, req.aggregates)
        return grouped.slice(req.offset, req.limit) if req.limit is not None else grouped.slice(req.offset)
    if COUNT in req.output_fields:
        total = sum(int(t.column(COUNT)[0].as_py()) for t in tables if COUNT in t.column_names and t.num_rows)
        return pa.table({COUNT: pa.array([total], pa.int64())})
    rows = _concat(tables)
    if rows.num_rows and pk in rows.column_names:
        rows = rows.take(pc.sort_indices(rows.column(pk)))  # a limited query: the smallest keys
    return rows.slice(req.offset, req.limit) if req.limit is not None else rows.slice(req.offset)


def sum_bm25(parts: list[list[Any]]) -> list[tuple[int, float, list[float]]] | None:
    parts = [p for p in parts if p]
    if not parts:
        return None
    out = []
    for per_query in zip(*parts, strict=True):
        n = sum(int(p[0]) for p in per_query)
        total = sum(float(p[1]) for p in per_query)
        df = np.sum([np.asarray(p[2], np.float64) for p in per_query], axis=0)
        out.append((n, total, df.tolist()))
    return out


__all__ = ["merge_hits", "merge_rows", "shard_query", "sum_bm25"]
