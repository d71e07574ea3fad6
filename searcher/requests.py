"""Shaping search and query requests: filter compilation, checks, partitions, hit lists, groups."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from schemas.catalog import CollectionInfo
from schemas.exceptions import InvalidArgument, PartitionNotFound
from schemas.filters import CompiledFilter, FilterSchema, compile_filter, filter_view
from schemas.sparse import SparseQueries
from schemas.types import DataType
from searcher.search import gather
from walvus.searcher import Hits


def compiled_filter(info: CollectionInfo, expr: str, params: dict[str, Any]) -> CompiledFilter | None:
    """The compiled filter, cached per collection schema version, expression and parameters."""
    if not expr or not expr.strip():
        return None
    key = (info.collection_id, info.schema.version, expr, _freeze(params))
    flt = _FILTERS.get(key)
    if flt is None:
        flt = compile_filter(expr, filter_schema(info), params or None)
        if len(_FILTERS) > 1024:
            _FILTERS.clear()
        _FILTERS[key] = flt
    return flt


_FILTERS: dict[tuple, CompiledFilter] = {}


def _freeze(params: dict[str, Any]) -> tuple:
    try:
        return tuple(sorted((k, _hashable(v)) for k, v in (params or {}).items()))
    except TypeError:
        return ()


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


_SCHEMAS: dict[tuple[int, int], FilterSchema] = {}


def filter_schema(info: CollectionInfo) -> FilterSchema:
    """``filter_view``, cached per collection and schema version."""
    key = (info.collection_id, info.schema.version)
    fs = _SCHEMAS.get(key)
    if fs is None:
        fs = _SCHEMAS[key] = filter_view(info.schema)
    return fs


def group_positions(
    values: list[Any], limit: int, offset: int, size: int, strict: bool
) -> tuple[list[int], bool]:
    """Milvus's group reduce over candidates in best-first order: skip the first ``offset`` groups,
    keep ``limit`` groups of up to ``size`` hits. Returns the kept positions (grouped, groups in
    order of their best hit) and whether the groups are complete (full ones when ``strict``)."""
    groups: dict[Any, list[int]] = {}
    skipped: set[Any] = set()
    for pos, value in enumerate(values):
        if value in skipped:
            continue
        g = groups.get(value)
        if g is None:
            if len(skipped) < offset:
                skipped.add(value)
                continue
            if len(groups) >= limit:
                continue
            g = groups[value] = []
        if len(g) < size:
            g.append(pos)
    complete = len(groups) >= limit and (not strict or all(len(g) >= size for g in groups.values()))
    return [p for g in groups.values() for p in g], complete


def split_hits(
    info: CollectionInfo, used: list, d: np.ndarray, refs: np.ndarray, cols: list[str], round_decimal: int
) -> list[Hits]:
    """One gather for all queries' hits, then one ``Hits`` per query (no per-query Arrow work)."""
    keep = refs >= 0
    counts = keep.sum(axis=1)
    flat = refs[keep]
    dist = d[keep].astype(np.float32)
    if round_decimal >= 0:
        dist = np.round(dist, round_decimal)
    if len(flat):
        pks, fields = gather(used, flat, cols)
        ids = pks.to_pylist()
    else:
        ids, fields = [], empty_table(info, cols)
    out: list[Hits] = []
    start = 0
    for n in counts.tolist():
        out.append(Hits(ids[start : start + n], dist[start : start + n], fields.slice(start, n)))
        start += n
    return out


def only_vector_field(info: CollectionInfo) -> str:
    vecs = info.schema.vector_fields
    if len(vecs) != 1:
        raise InvalidArgument(f"collection {info.name} has {len(vecs)} vector fields: name anns_field")
    return vecs[0].name


def check_queries(queries: np.ndarray, f: Any) -> np.ndarray:
    if f.dtype.is_sparse:
        if not isinstance(queries, SparseQueries):
            raise InvalidArgument(f"field {f.name} is SPARSE_FLOAT_VECTOR: search it with sparse vectors")
        return queries
    width = int(f.dim) // 8 if f.dtype == DataType.BINARY_VECTOR else int(f.dim)
    if queries.ndim != 2 or queries.shape[1] != width:
        got = queries.shape[1] if queries.ndim == 2 else queries.shape
        raise InvalidArgument(
            f"the dimension of the query vectors ({got}) does not match field {f.name} (dim {f.dim})"
        )
    return queries


def check_partitions(
    info: CollectionInfo, partitions: list[str] | None, flt: CompiledFilter | None
) -> list[str] | None:
    if partitions:
        for p in partitions:
            if p not in info.partitions:
                raise PartitionNotFound(info.name, p)
        return list(partitions)
    pkey = info.schema.partition_key
    if pkey is not None and flt is not None:
        vals = flt.values_for(pkey.name)
        if vals is not None:
            from walvus.partitions import partitions_for_keys

            idx = partitions_for_keys(info, list(vals)) if vals else np.zeros(0, np.int64)
            return sorted({f"_default_{i}" for i in idx.tolist()})
    return None


def without_dropped(
    info: CollectionInfo, partitions: list[str] | None, snapshot: list[tuple[Any, np.ndarray]]
) -> list[str] | None:
    """All partitions means the existing ones: rows of a dropped partition stay in memory (and in
    Delta) until the collection is reloaded, but are never read."""
    if partitions is not None:
        return partitions
    existing = set(info.partitions)
    if all(c.partition_names <= existing for c, _ in snapshot):
        return None
    return list(info.partitions)


def empty_table(info: CollectionInfo, cols: list[str]) -> pa.Table:
    schema = info.schema.stored_arrow_schema()
    return pa.table({c: pa.array([], schema.field(c).type) for c in cols if c in schema.names})
