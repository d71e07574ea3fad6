"""Top-k and range search over one loaded collection: per container, then one merge.

Each key has at most one live row across all containers, so merging is a plain top-k
over the candidates; the ``alive`` bitmap (with the filter and partition masks) goes
into FAISS as the allowed set, so dead rows never take a slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from indexer import (
    SPARSE_FILTER_FRACTION,
    SPARSE_FILTER_ROWS,
    InterimIndex,
    brute_force_range_search,
    brute_force_search,
    topk,
)
from schemas.exceptions import InvalidArgument
from schemas.filters import CompiledFilter
from schemas.index_spec import is_similarity, search_int
from schemas.scalar_index import ScalarSource
from schemas.types import DataType
from searcher.interim import InterimGroup
from searcher.scalar_index import indexed_mask
from searcher.segment import Container, normalize_rows

DEFAULT_METRIC = {True: "HAMMING", False: "COSINE"}


def resolve_metric(coll_info: Any, field_name: str, requested: str | None) -> str:
    idx = coll_info.indexes.get(field_name)
    f = coll_info.schema.field(field_name)
    binary = f.dtype == DataType.BINARY_VECTOR
    metric = (requested or (idx.metric_type if idx else DEFAULT_METRIC[binary])).upper()
    if idx is not None and metric != idx.metric_type.upper():
        raise InvalidArgument(
            f"metric type not match: invalid parameter[expected={idx.metric_type}][actual={metric}]"
        )
    return metric


def pruned(c: Container, partitions: Sequence[str] | None) -> bool:
    """True when the container holds one partition that the request did not ask for."""
    return partitions is not None and c.partition is not None and c.partition not in partitions


def container_mask(
    c: Container,
    alive: np.ndarray,
    flt: CompiledFilter | None,
    partitions: Sequence[str] | None,
    sources: frozenset[ScalarSource] = frozenset(),
) -> np.ndarray:
    """Live rows of ``c`` in the requested partitions that pass ``flt``; sealed segments prune
    through the postings of the collection's scalar indexes (``sources``) first."""
    mask = alive
    if partitions is not None and c.partition is not None:
        if c.partition not in partitions:
            return np.zeros_like(mask)
    elif partitions is not None:
        part = np.isin(c.table.column("_partition").to_numpy(zero_copy_only=False), np.asarray(partitions))
        mask = mask & part
    if flt is not None and not flt.matches_all and mask.any():
        if c.sealed and sources:
            return indexed_mask(flt, c.table, mask, sources, c.postings)
        mask = mask & flt.evaluate(c.table)
    return mask


def with_vectors(c: Container, mask: np.ndarray, f: Any) -> np.ndarray:
    """A nullable (added) vector field: rows without a vector are never search results."""
    if not getattr(f, "nullable", False) or f.name not in c.table.column_names or not mask.any():
        return mask
    col = c.table.column(f.name)
    return mask & col.is_valid().to_numpy(zero_copy_only=False) if col.null_count else mask


def knn(
    view: list[tuple[Container, np.ndarray]],
    schema: Any,
    field_name: str,
    queries: np.ndarray,
    k: int,
    metric: str,
    params: dict[str, Any],
    interim: Callable[[int], tuple[InterimIndex, ...]] | None = None,
    interim_ef: int = 64,
) -> tuple[np.ndarray, np.ndarray, list[Container]]:
    """Global top-k: distances (nq, k), refs (nq, k) into the flat row space of ``used``.

    Growing rows that an interim index holds (``interim``: shard -> its indexes, each over a
    range of growing positions) are searched through it, one call per index; every other row
    through its segment's index, or exactly.
    """
    sim = is_similarity(metric)
    exact = _PerContainer(schema, field_name, queries, metric, params)
    parts_d: list[np.ndarray] = []
    parts_i: list[np.ndarray] = []
    used: list[Container] = []
    groups: dict[int, InterimGroup] = {}
    base = 0
    for c, mask in view:
        n_allowed = c.count(mask)
        if n_allowed == 0:
            continue
        used.append(c)
        c_base, base = base, base + c.num_rows
        rest: np.ndarray | None = mask
        for ix in () if c.sealed or interim is None else interim(c.shard):
            if ix.metric != metric or rest is None:
                continue
            group = groups.get(id(ix))
            if group is None:
                group = groups[id(ix)] = InterimGroup(ix)
            rest = group.take(c, rest, c_base)
        if rest is None:
            continue
        if rest is not mask:
            mask, n_allowed = rest, int(np.count_nonzero(rest))
        d, labels = exact.search(c, mask, n_allowed, k)
        parts_d.append(d)
        parts_i.append(np.where(labels >= 0, labels + c_base, -1))
    for group in groups.values():
        n_allowed = group.allowed()
        if n_allowed <= max(SPARSE_FILTER_ROWS, SPARSE_FILTER_FRACTION * len(group.bits)):
            for c, c_base, covered in group.members:  # few rows: exact beats a filtered graph walk
                d, labels = exact.search(c, covered, int(np.count_nonzero(covered)), k)
                parts_d.append(d)
                parts_i.append(np.where(labels >= 0, labels + c_base, -1))
            continue
        ef = search_int(params, ("ef",), interim_ef)
        d, labels = group.ix.search(exact.normalized_queries(), min(k, n_allowed), group.bits, ef)
        parts_d.append(d)
        parts_i.append(group.refs(labels))
    nq = queries.shape[0]
    if not parts_d:
        return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64), used
    parts_d = [
        np.where(i >= 0, d, -np.inf if sim else np.inf).astype(np.float32, copy=False)
        for d, i in zip(parts_d, parts_i, strict=True)
    ]
    if len(parts_d) == 1 and parts_d[0].shape[1] == k:  # one container: already the sorted top-k
        return parts_d[0], parts_i[0], used
    dists = np.concatenate(parts_d, axis=1)
    refs_all = np.concatenate(parts_i, axis=1)
    d, cols = topk(dists, k, sim)
    refs = np.where(cols >= 0, np.take_along_axis(refs_all, np.maximum(cols, 0), axis=1), -1)
    return d, refs, used


class _PerContainer:
    """Search one container's allowed rows: through its segment index, else exactly."""

    def __init__(
        self, schema: Any, field_name: str, queries: np.ndarray, metric: str, params: dict[str, Any]
    ) -> None:
        self.schema, self.field, self.queries, self.metric, self.params = (
            schema,
            field_name,
            queries,
            metric,
            params,
        )
        self._cosine_q: np.ndarray | None = None

    def normalized_queries(self) -> np.ndarray:
        """Queries as an index stored for this metric expects them (unit length for COSINE)."""
        if self.metric != "COSINE":
            return self.queries
        if self._cosine_q is None:
            self._cosine_q = normalize_rows(self.queries)
        return self._cosine_q

    def search(self, c: Container, mask: np.ndarray, n_allowed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, n_allowed)
        allowed = None if n_allowed == c.num_rows else mask
        entry = c.indexes.get(self.field)
        if entry is not None:
            return entry[1].search(self.queries, kk, self.params, allowed=allowed)
        if self.metric == "COSINE":
            vectors = c.vectors(self.schema, self.field, True)
            return brute_force_search(vectors, self.normalized_queries(), kk, "IP", allowed=allowed)
        return brute_force_search(
            c.vectors(self.schema, self.field), self.queries, kk, self.metric, allowed=allowed
        )


def range_knn(
    view: list[tuple[Container, np.ndarray]],
    schema: Any,
    field_name: str,
    queries: np.ndarray,
    k: int,
    metric: str,
    params: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, list[Container]]:
    """Range search (radius / range_filter), at most k per query, padded like ``knn``."""
    radius = float(params["radius"])
    rf = params.get("range_filter")
    rf = None if rf is None else float(rf)
    sim = is_similarity(metric)
    nq = queries.shape[0]
    per_q_d: list[list[np.ndarray]] = [[] for _ in range(nq)]
    per_q_i: list[list[np.ndarray]] = [[] for _ in range(nq)]
    used, base = [], 0
    for c, mask in view:
        if not mask.any():
            continue
        entry = c.indexes.get(field_name)
        allowed = None if mask.all() else mask
        if entry is not None:
            res = entry[1].range_search(queries, radius, rf, params, allowed=allowed, limit=k)
        else:
            res = brute_force_range_search(
                c.vectors(schema, field_name), queries, metric, radius, rf, allowed=allowed, limit=k
            )
        for qi, (d, labels) in enumerate(res):
            per_q_d[qi].append(np.asarray(d, np.float32))
            per_q_i[qi].append(np.asarray(labels, np.int64) + base)
        used.append(c)
        base += c.num_rows
    out_d = np.full((nq, k), -np.inf if sim else np.inf, np.float32)
    out_i = np.full((nq, k), -1, np.int64)
    for qi in range(nq):
        if not per_q_d[qi]:
            continue
        d = np.concatenate(per_q_d[qi])
        i = np.concatenate(per_q_i[qi])
        if len(d) == 0:
            continue
        top_d, cols = topk(d[None, :], k, sim)
        n = int((cols[0] >= 0).sum())
        out_d[qi, :n] = top_d[0, :n]
        out_i[qi, :n] = i[cols[0, :n]]
    return out_d, out_i, used


def gather(used: list[Container], refs: np.ndarray, columns: list[str]) -> tuple[pa.Array, pa.Table]:
    """Primary keys and output columns of flat row refs (all >= 0), in order."""
    if len(used) == 1:  # the common case: one container, no reordering
        c = used[0]
        pks = c.take_pks(refs)
        if not columns:
            return pks, pa.table({})
        if columns == [c.pk_name]:
            return pks, pa.table({c.pk_name: pks})
        return pks, c.take_columns(columns, refs)
    sizes = np.array([c.num_rows for c in used], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else np.zeros(0, np.int64)
    which = np.searchsorted(starts, refs, side="right") - 1
    rows = refs - starts[which] if len(refs) else refs
    order = np.argsort(which, kind="stable")
    pk_parts, col_parts = [], []
    for ci in np.unique(which):
        sel = order[which[order] == ci]
        c = used[int(ci)]
        pk_parts.append(c.take_pks(rows[sel]))
        if columns:
            col_parts.append(c.take_columns(columns, rows[sel]))
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.arange(len(order))
    pks = pa.concat_arrays(pk_parts).take(inverse) if pk_parts else pa.array([], type=pa.int64())
    fields = (
        pa.concat_tables(col_parts, promote_options="default").take(inverse) if col_parts else pa.table({})
    )
    return pks, fields
