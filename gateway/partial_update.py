"""Partial updates: ``upsert(..., partial_update=True)`` and the array ``field_ops``.

Where the merge happens, and what it guarantees: the gateway reads the live rows of the given
primary keys with a **Strong** read (every write acknowledged before the request is seen), merges
the given fields into them (fields not given keep their value; dynamic keys given replace those
keys and keep the others; ``ARRAY_APPEND`` / ``ARRAY_REMOVE`` apply to the stored array), and
writes the **full rows** as an ordinary upsert through the WAL. So the WAL, the streams worker,
the searchers, restarts and CDC only ever see whole rows, and a replica applies exactly what the
source applied. Partial updates of one collection through one gateway are serialised (a lock
around read, merge and write), so two of them never lose each other's fields. A write that comes
through another gateway or the ingest topic between the read and the write is overwritten for the
fields the merge carried over: per row, the last writer wins, as in Milvus (whose proxy also reads
the row, then upserts it).

A key that has no live row is inserted when the request gives every field that is neither nullable
nor has a default value (the others take null or their default); otherwise the request is refused
and nothing is written.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pymilvus.grpc_gen import schema_pb2

from schemas.catalog import CollectionInfo
from schemas.collection import META_FIELD
from schemas.exceptions import InvalidArgument
from schemas.types import DataType
from walvus.searcher import Consistency, ConsistencyLevel, QueryRequest, Searcher

APPEND = schema_pb2.FieldPartialUpdateOp.ARRAY_APPEND
REMOVE = schema_pb2.FieldPartialUpdateOp.ARRAY_REMOVE
REPLACE = schema_pb2.FieldPartialUpdateOp.REPLACE


class PartialUpdater:
    """Turns the given fields of a partial upsert into full rows (see the module doc)."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, info: CollectionInfo) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(info.collection_id, threading.Lock())

    def merge(
        self,
        info: CollectionInfo,
        columns: dict[str, Any],
        n: int,
        field_ops: Sequence[schema_pb2.FieldPartialUpdateOp] = (),
    ) -> dict[str, Any]:
        """The full columns of the rows; call with ``lock(info)`` held until they are written."""
        schema = info.schema
        pk = schema.primary.name
        if columns.get(pk) is None:
            raise InvalidArgument(f"partial update needs the primary key field {pk!r} in every row")
        ops = _ops(info, field_ops, columns)
        keys = pa.array(columns[pk]) if not isinstance(columns[pk], pa.Array) else columns[pk]
        outputs = {o for fn in schema.functions for o in fn.output_field_names}
        stored = [f.name for f in schema.fields if f.name not in outputs]
        if schema.enable_dynamic_field:
            stored.append(META_FIELD)
        live = self._read(info, keys, stored)
        where = pc.index_in(keys, value_set=live.column(pk).combine_chunks()) if live.num_rows else None
        found = (
            np.zeros(n, dtype=bool)
            if where is None
            else where.is_valid().to_numpy(zero_copy_only=False).astype(bool)
        )
        if not found.all():
            _check_new_rows(info, columns, keys, found, stored)
        out = dict(columns)
        for name in stored:
            old = live.column(name).combine_chunks().take(where) if where is not None else None
            given = columns.get(name)
            if name in ops:
                out[name] = _array_op(ops[name], old, given, n)
            elif name == META_FIELD:
                out[name] = _merge_meta(old, given, n)
            elif given is None and old is not None:
                out[name] = old
        return out

    def _read(self, info: CollectionInfo, keys: pa.Array, fields: list[str]) -> pa.Table:
        return self.searcher.query(
            QueryRequest(
                info.name,
                collection_id=info.collection_id,
                ids=keys.to_pylist(),
                output_fields=fields,
                consistency=Consistency(ConsistencyLevel.STRONG, 0),
            )
        )


def _ops(
    info: CollectionInfo, field_ops: Sequence[schema_pb2.FieldPartialUpdateOp], columns: dict[str, Any]
) -> dict[str, int]:
    ops: dict[str, int] = {}
    for op in field_ops:
        f = info.schema.field(op.field_name)
        if f is None:
            raise InvalidArgument(f"field_ops: field {op.field_name!r} is not in collection {info.name}")
        if op.field_name in ops:
            raise InvalidArgument(f"field_ops: field {op.field_name!r} has two operators")
        if op.op == REPLACE:
            continue
        if op.op not in (APPEND, REMOVE):
            raise InvalidArgument(f"field_ops: unknown operator {op.op} for field {op.field_name!r}")
        if f.dtype != DataType.ARRAY:
            raise InvalidArgument(
                f"field_ops: {schema_pb2.FieldPartialUpdateOp.OpType.Name(op.op)} applies to ARRAY "
                f"fields, and {op.field_name!r} is {f.dtype.name}"
            )
        if columns.get(op.field_name) is None:
            raise InvalidArgument(f"field_ops: field {op.field_name!r} has an operator but no values")
        ops[op.field_name] = op.op
    return ops


def _check_new_rows(
    info: CollectionInfo, columns: dict[str, Any], keys: pa.Array, found: np.ndarray, stored: list[str]
) -> None:
    """Keys without a live row become inserts only when the required fields are all given."""
    missing = [
        f.name
        for f in info.schema.fields
        if f.name in stored and columns.get(f.name) is None and not f.nullable and f.default_value is None
    ]
    if missing:
        new = keys.filter(pa.array(~found)).to_pylist()
        raise InvalidArgument(
            f"partial update: primary key(s) {new[:5]} have no row in collection {info.name}, and a new "
            f"row needs every field that is not nullable and has no default; missing {missing}",
            collection=info.name,
        )


def _array_op(op: int, old: pa.Array | None, given: Any, n: int) -> list[Any]:
    payload = given.to_pylist() if isinstance(given, pa.Array) else list(given)
    base = old.to_pylist() if old is not None else [None] * n
    if op == APPEND:
        return [(b or []) + (p or []) for b, p in zip(base, payload, strict=True)]
    out = []
    for b, p in zip(base, payload, strict=True):
        drop = set(p or [])
        out.append([v for v in (b or []) if v not in drop])
    return out


def _merge_meta(old: pa.Array | None, given: Any, n: int) -> Any:
    """Dynamic fields: the given keys replace the stored ones, the others stay."""
    if given is None:
        return old
    if old is None:
        return given
    new = given.to_pylist() if isinstance(given, pa.Array) else list(given)
    base = old.to_pylist()
    out: list[Any] = []
    for b, g in zip(base, new, strict=True):
        if b is None:
            out.append(g)
            continue
        merged = orjson.loads(b)
        if g is not None:
            merged.update(orjson.loads(g) if isinstance(g, (bytes, str)) else g)
        out.append(orjson.dumps(merged).decode())
    return out
