"""Ordering results by fields: ``query(..., order_by=[...])`` and ``search(..., order_by_fields=[...])``.

pymilvus sends ``order_by_fields`` as ``"field:asc,other:desc"`` (the direction defaults to
``asc``). A key is a scalar field (numbers, VARCHAR, BOOL), a JSON path of a JSON field
(``meta["age"]``, ``meta["a"]["b"]``, ``meta["list"][0]``) or a dynamic-field key. Vector, array
and whole-JSON fields are refused.

Semantics (walvus's, following Milvus's documented behaviour where it has one):
- query: every matching row is ordered by the keys, then ``offset`` and ``limit`` cut the page, so
  pages of one order never overlap;
- search: the ``offset + limit`` nearest rows are found by vector similarity first, then those are
  ordered by the keys and the page is cut; the order changes, the set of hits does not;
- rows whose key is null (or whose JSON path is missing) come after all others, in both
  directions; ties keep the previous order (query: primary key ascending; search: best first).
- a JSON path whose values mix numbers and strings in one result is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas.collection import META_FIELD, CollectionSchema
from schemas.exceptions import InvalidArgument
from schemas.types import DataType
from walvus.searcher import Hits

_KEY_RE = re.compile(r'^([A-Za-z_$][\w$]*)((?:\[(?:"[^"]*"|\d+)\])*)$')
_STEP_RE = re.compile(r'\[(?:"([^"]*)"|(\d+))\]')


@dataclass(frozen=True)
class OrderKey:
    column: str  # the stored column holding the value (a field, or ``$meta``)
    path: tuple[str | int, ...]  # JSON steps into it (empty for a scalar field)
    descending: bool
    text: str  # as the client wrote it


def parse_order(schema: CollectionSchema, spec: str) -> list[OrderKey]:
    """The keys of an ``order_by_fields`` value; an empty value gives no keys."""
    keys: list[OrderKey] = []
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        name, _, direction = raw.rpartition(":") if ":" in raw else (raw, "", "asc")
        direction = direction.strip().lower() or "asc"
        if direction not in ("asc", "desc"):
            raise InvalidArgument(f"order_by_fields: {raw!r}: the direction must be asc or desc")
        keys.append(_key(schema, name.strip(), direction == "desc", raw))
    return keys


def _key(schema: CollectionSchema, name: str, descending: bool, raw: str) -> OrderKey:
    m = _KEY_RE.match(name)
    if m is None:
        raise InvalidArgument(f"order_by_fields: {raw!r} is not a field name or a JSON path")
    base, steps = m.group(1), tuple(s if i == "" else int(i) for s, i in _STEP_RE.findall(m.group(2)))
    field = schema.field(base)
    if field is None:
        if not schema.enable_dynamic_field or base == META_FIELD:
            raise InvalidArgument(f"order_by_fields: field {base} not exist")
        return OrderKey(META_FIELD, (base, *steps), descending, raw)
    if field.dtype == DataType.JSON:
        if not steps:
            raise InvalidArgument(f'order_by_fields: order by a JSON field needs a path, like {base}["key"]')
        return OrderKey(base, steps, descending, raw)
    if steps:
        raise InvalidArgument(f"order_by_fields: {base} is {field.dtype.name}, not JSON: it has no path")
    if field.dtype.is_vector or field.dtype == DataType.ARRAY:
        raise InvalidArgument(f"order_by_fields: cannot order by {field.dtype.name} field {base}")
    return OrderKey(base, (), descending, raw)


def columns(keys: list[OrderKey]) -> list[str]:
    return list(dict.fromkeys(k.column for k in keys))


def order_indices(table: pa.Table, keys: list[OrderKey]) -> np.ndarray:
    """Row positions of ``table`` in the order of ``keys``; ties keep the table's order."""
    n = table.num_rows
    arrays: list[pa.Array] = []
    sort_keys: list[tuple[str, str, str]] = []
    for i, k in enumerate(keys):
        col = table.column(k.column).combine_chunks()
        arr = _json_values(col, k) if k.path else col
        arrays.append(arr)
        sort_keys.append((f"k{i}", "descending" if k.descending else "ascending", "at_end"))
    arrays.append(pa.array(np.arange(n, dtype=np.int64)))
    sort_keys.append(("k_row", "ascending", "at_end"))
    keyed = pa.table(arrays, names=[f"k{i}" for i in range(len(keys))] + ["k_row"])
    return pc.sort_indices(keyed, sort_keys=sort_keys).to_numpy()


def _json_values(col: pa.Array, key: OrderKey) -> pa.Array:
    """The values at a JSON path, one per row (null where missing); numbers or strings."""
    out: list[Any] = []
    for text in col.to_pylist():  # JSON text must be parsed row by row
        v: Any = None if text is None else orjson.loads(text)
        for step in key.path:
            if isinstance(step, int):
                v = v[step] if isinstance(v, list) and -len(v) <= step < len(v) else None
            else:
                v = v.get(step) if isinstance(v, dict) else None
        out.append(v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else None)
    kinds = {type(v) is str for v in out if v is not None}
    if len(kinds) > 1:
        raise InvalidArgument(f"order_by_fields: {key.text} holds both numbers and strings in these rows")
    if kinds == {False}:
        return pa.array([None if v is None else float(v) for v in out], type=pa.float64())
    return pa.array(out, type=pa.string())


def ordered_hits(h: Hits, order: list, offset: int, limit: int) -> Hits:
    """One query's hits ordered by the keys, then the page ``offset:offset+limit``."""
    if not len(h.ids):
        return h
    idx = order_indices(h.fields, order)[offset : offset + limit]
    ids = h.ids.tolist() if isinstance(h.ids, np.ndarray) else list(h.ids)
    take = pa.array(idx, type=pa.int64())
    return Hits([ids[i] for i in idx], np.asarray(h.distances)[idx], h.fields.take(take))
