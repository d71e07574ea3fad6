"""Scalar and JSON-path index definitions: what a scalar index covers, checked once at CreateIndex.

A scalar index is a catalog entry (``IndexInfo``) on a scalar field, on a path inside a JSON field
(``json_path`` + ``json_cast_type``), or on a key of the dynamic field (the index's field name is
then the key, as in Milvus). There may be several JSON-path indexes per JSON field, told apart by
their index names; every other field has at most one index. The searcher turns each into sorted
postings per sealed segment (``searcher/scalar_index.py``).

>>> parse_json_path('meta["a"][0]', "meta")
('a', 0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from schemas.collection import META_FIELD, CollectionSchema
from schemas.exceptions import InvalidArgument
from schemas.types import DataType

SCALAR_INDEX_TYPES = ("AUTOINDEX", "INVERTED", "STL_SORT", "TRIE", "BITMAP")
JSON_INDEX_TYPES = ("AUTOINDEX", "INVERTED", "STL_SORT", "BITMAP")
# json_cast_type -> the kind of value the index orders ("" when it serves no comparison pruning)
JSON_CAST_TYPES = {
    "BOOL": "bool",
    "DOUBLE": "num",
    "VARCHAR": "str",
    "ARRAY_BOOL": "",
    "ARRAY_DOUBLE": "",
    "ARRAY_VARCHAR": "",
    "JSON": "",
}
_INTS = (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64)
_ALLOWED: dict[str, tuple[DataType, ...]] = {
    "STL_SORT": (*_INTS, DataType.FLOAT, DataType.DOUBLE, DataType.VARCHAR),
    "TRIE": (DataType.VARCHAR,),
    "BITMAP": (DataType.BOOL, *_INTS, DataType.VARCHAR, DataType.ARRAY),
    "INVERTED": (DataType.BOOL, *_INTS, DataType.FLOAT, DataType.DOUBLE, DataType.VARCHAR, DataType.ARRAY),
}
_STEP = re.compile(r"""\[\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|(-?\d+))\s*\]""")


def _timestamptz() -> tuple[DataType, ...]:
    tz = getattr(DataType, "TIMESTAMPTZ", None)
    return (tz,) if tz is not None else ()


def parse_json_path(text: str, name: str) -> tuple[str | int, ...]:
    """The steps of ``name["a"][0]`` (brackets with quoted keys or integer indexes) after ``name``."""
    text = str(text).strip()
    if not text.startswith(name):
        if not text or not (text[0].isalnum() or text[0] == "_"):
            raise InvalidArgument(
                f"mismatched input '{text[:1]}' in json_path {text!r}: it must start with {name}"
            )
        raise InvalidArgument(
            f"cannot parse identifier: {text} (a json_path starts with the field name {name})"
        )
    rest, steps = text[len(name) :], []
    pos = 0
    while pos < len(rest):
        m = _STEP.match(rest, pos)
        if m is None:
            raise InvalidArgument(
                f'json_path {text!r} is not a path of bracketed keys such as {name}["key"][0]'
            )
        key = m.group(1) if m.group(1) is not None else m.group(2)
        steps.append(key if key is not None else int(m.group(3)))
        pos = m.end()
    return tuple(steps)


def default_index_name(schema: CollectionSchema, field_name: str, json_path: str) -> str:
    """Milvus's name for an unnamed JSON-path index: ``meta/a/0``, ``$meta/key/a`` for a dynamic key."""
    steps = [str(s) for s in parse_json_path(json_path, field_name)]
    head = field_name if schema.field(field_name) is not None else f"{META_FIELD}/{field_name}"
    return "/".join([head, *steps])


def index_key(field: str, index_name: str, json_path: str | None) -> str:
    """The catalog key of an index: the field for a plain index, field and name for a JSON path."""
    return f"{field}#{index_name}" if json_path is not None else field


@dataclass(frozen=True)
class ScalarSource:
    """What one scalar index orders: a stored column (and a path inside it for JSON) seen as ``kind``."""

    column: str
    path: tuple[str | int, ...] | None  # None: a plain scalar column
    kind: str  # num, str or bool


_ONLY_ON = {
    "STL_SORT": "STL_SORT are only supported on numeric, varchar or timestamptz field",
    "BITMAP": "bitmap index are only supported on bool, int, string and array field",
    "TRIE": "TRIE are only supported on varchar field",
    "INVERTED": "INVERTED are only supported on bool, numeric, varchar, timestamptz, array and json field",
}


def check_scalar_index(
    schema: CollectionSchema, field_name: str, index_type: str, params: dict[str, Any], raw_type: str = ""
) -> dict[str, Any]:
    """Validate a scalar or JSON-path index request (Milvus's rules and messages); returns the
    params to store (a JSON index without ``json_path`` indexes the whole value: the field name)."""
    if index_type not in SCALAR_INDEX_TYPES:
        raise InvalidArgument(
            f"invalid parameter[expected=valid index][actual=invalid index type: {raw_type or index_type}]"
        )
    field = schema.field(field_name)
    if "json_cast_function" in params:
        raise InvalidArgument("json_cast_function is not supported by walvus; store values in the cast type")
    if field is None and not schema.enable_dynamic_field:
        raise InvalidArgument(f"cannot create index on non-exist field: {field_name}")
    if field is not None and field.dtype != DataType.JSON:
        if "json_path" in params or "json_cast_type" in params:
            raise InvalidArgument(
                f"json_path and json_cast_type are only for JSON fields, not {field_name} ({field.dtype.name})"
            )
        allowed = _ALLOWED.get(index_type)
        if index_type in ("STL_SORT", "INVERTED"):
            allowed = (*allowed, *_timestamptz())  # type: ignore[misc]
        if allowed is not None and field.dtype not in allowed:
            raise InvalidArgument(f"{_ONLY_ON[index_type]}, got {field.dtype.name} (field {field_name})")
        if index_type == "BITMAP" and field.is_primary:
            raise InvalidArgument(f"index type BITMAP cannot index the primary key field {field_name}")
        return params
    # a JSON field, or a key of the dynamic field
    cast = params.get("json_cast_type")
    if cast is None:
        raise InvalidArgument("json index must specify cast type: missing parameter")
    if index_type not in JSON_INDEX_TYPES:
        raise InvalidArgument(f"{_ONLY_ON[index_type]}, got JSON")
    if str(cast).strip().upper() not in JSON_CAST_TYPES:
        raise InvalidArgument(
            f"json_cast_type {cast} is not supported; use one of {', '.join(JSON_CAST_TYPES)}"
        )
    out = dict(params)
    out.setdefault("json_path", field_name)
    parse_json_path(str(out["json_path"]), field_name)
    return out


def scalar_sources(schema: CollectionSchema, indexes: Any) -> frozenset[ScalarSource]:
    """The sources the collection's scalar indexes order (the filter evaluator prunes with them)."""
    out = set()
    for idx in indexes.values():
        field = schema.field(idx.field)
        json_path = idx.params.get("json_path")
        if json_path is not None:
            kind = JSON_CAST_TYPES.get(str(idx.params.get("json_cast_type", "")).strip().upper(), "")
            if not kind:
                continue
            try:
                path = parse_json_path(str(json_path), idx.field)
            except InvalidArgument:
                continue
            if field is None:  # a dynamic key
                out.add(ScalarSource(META_FIELD, (idx.field, *path), kind))
            else:
                out.add(ScalarSource(field.name, path, kind))
            continue
        if field is None or field.dtype.is_vector or field.dtype in (DataType.JSON, DataType.ARRAY):
            continue
        if field.dtype.is_numeric or field.dtype.name == "TIMESTAMPTZ":
            out.add(ScalarSource(field.name, None, "num"))
        elif field.dtype in (DataType.VARCHAR, DataType.STRING):
            out.add(ScalarSource(field.name, None, "str"))
        elif field.dtype == DataType.BOOL:
            out.add(ScalarSource(field.name, None, "bool"))
    return frozenset(out)
