"""Validate a batch of rows against a collection schema and build its Arrow record batch.

Errors name the field and, where one row is at fault, the row. A batch that fails
validation produces no record at all, so nothing of it is ever written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas.bm25 import field_term_frequencies
from schemas.collection import META_FIELD, CollectionSchema, FieldSchema
from schemas.exceptions import ValidationError
from schemas.sparse import sparse_column
from schemas.timestamptz import parse_iso
from schemas.types import INTEGER_RANGES, SCALAR_ARROW, DataType
from schemas.vector_columns import first_null as _first_null
from schemas.vector_columns import vector_column

Columns = Mapping[str, Any]


def rows_to_columns(schema: CollectionSchema, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pivot row dicts into columns; keys outside the schema go to ``$meta`` when dynamic."""
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
        raise ValidationError("rows must be a list of objects")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise ValidationError(f"row {i} is not an object: {type(r).__name__}", row=i)
    names = {f.name for f in schema.fields}
    cols: dict[str, Any] = {}
    for name in names:
        if any(name in r for r in rows):
            cols[name] = [r.get(name) for r in rows]
    extra = [{k: v for k, v in r.items() if k not in names} for r in rows]
    if any(extra):
        if not schema.enable_dynamic_field:
            unknown = sorted({k for e in extra for k in e})
            row = next(i for i, e in enumerate(extra) if e)
            raise ValidationError(
                f"field {unknown[0]!r} (row {row}) is not in the collection schema and dynamic fields are disabled",
                field=unknown[0],
                row=row,
            )
        if META_FIELD in names:
            raise ValidationError(f"{META_FIELD} is reserved", field=META_FIELD)
        cols[META_FIELD] = [orjson.dumps(e).decode() for e in extra]
    return cols


def build_batch(
    schema: CollectionSchema,
    columns: Columns,
    *,
    op: str = "insert",
    auto_ids: np.ndarray | None = None,
    max_batch_rows: int | None = None,
) -> pa.RecordBatch:
    """Validate ``columns`` (field -> list, numpy array or Arrow array) into a data record batch.

    ``op`` is ``insert`` or ``upsert``. For an auto_id primary key on insert, the server's
    ``auto_ids`` fill the key column, and a key given by the client is an error.
    """
    pk = schema.primary
    if pk.auto_id and op == "insert":
        if columns.get(pk.name) is not None:
            raise ValidationError(
                f"primary key {pk.name!r} is auto_id: do not provide it on insert", field=pk.name
            )
        if auto_ids is None:
            raise ValidationError(
                f"primary key {pk.name!r} is auto_id but no ids were allocated", field=pk.name
            )
        columns = {**columns, pk.name: pa.array(auto_ids, type=pa.int64())}
    n = _row_count(columns)
    if n == 0:
        raise ValidationError("the batch has no rows")
    if max_batch_rows is not None and n > max_batch_rows:
        raise ValidationError(f"the batch has {n} rows, more than the limit of {max_batch_rows}")
    known = {f.name for f in schema.fields}
    for name in columns:
        if name not in known and not (name == META_FIELD and schema.enable_dynamic_field):
            raise ValidationError(
                f"field {name!r} is not in the collection schema"
                + ("" if schema.enable_dynamic_field else " and dynamic fields are disabled"),
                field=name,
            )
    outputs = {o: fn for fn in schema.functions for o in fn.output_field_names}
    for name in outputs:
        if columns.get(name) is not None:
            raise ValidationError(
                f"field {name!r} is the output of function {outputs[name].name!r}: the server fills it, "
                "do not provide it",
                field=name,
            )
    arrays = []
    for f in schema.fields:
        arrays.append(None if f.name in outputs else _column(f, columns.get(f.name), n, op))
    by_name = {g.name: a for g, a in zip(schema.fields, arrays, strict=True)}
    for i, f in enumerate(schema.fields):
        if f.name in outputs:
            src = outputs[f.name].input_field_names[0]
            arrays[i] = field_term_frequencies(schema.field(src), by_name[src].to_pylist(), by_name)
    if schema.enable_dynamic_field:
        arrays.append(_meta_column(columns.get(META_FIELD), n))
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema.data_arrow_schema())
    if op == "upsert":
        check_unique_keys(batch.column(schema.primary.name), schema.primary.name)
    return batch


def check_unique_keys(keys: pa.Array, name: str) -> None:
    """Milvus rejects an upsert batch that names one primary key twice."""
    counts = pc.value_counts(keys)
    dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(dup):
        key = dup.field("values")[0].as_py()
        rows = np.flatnonzero(pc.equal(keys, key).to_numpy(zero_copy_only=False)).tolist()
        raise ValidationError(
            f"duplicate primary key {key!r} in field {name!r} of one upsert batch (rows {rows[:5]}); "
            "each key may appear once",
            field=name,
            row=rows[1],
        )


def _row_count(columns: Columns) -> int:
    lengths = {
        name: int(col.shape[0]) if hasattr(col, "shape") else len(col)
        for name, col in columns.items()
        if col is not None
    }
    if not lengths:
        return 0
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(lengths.items()))
        raise ValidationError(f"columns have different numbers of rows: {detail}")
    return next(iter(lengths.values()))


def _column(f: FieldSchema, values: Any, n: int, op: str) -> pa.Array:
    if f.is_primary:
        if values is None:
            raise ValidationError(f"missing primary key field {f.name!r}", field=f.name)
    if values is None:
        if f.default_value is not None:
            return pa.array([f.default_value] * n, type=f.arrow_type())
        if f.nullable:
            return pa.nulls(n, type=f.arrow_type())
        raise ValidationError(
            f"missing field {f.name!r}: it is not nullable and has no default", field=f.name
        )
    if f.dtype.is_sparse:
        return sparse_column(f.name, values, nullable=f.nullable)
    if f.dtype.is_vector:
        return vector_column(f, values, n)
    arr = _to_arrow(f, values)
    if arr.null_count:
        if f.is_primary:
            raise ValidationError(
                f"primary key {f.name!r} is null in row {_first_null(arr)}",
                field=f.name,
                row=_first_null(arr),
            )
        if f.default_value is not None:
            arr = pc.fill_null(arr, pa.scalar(f.default_value, type=arr.type))
        elif not f.nullable:
            row = _first_null(arr)
            raise ValidationError(
                f"field {f.name!r} is not nullable, but row {row} is null", field=f.name, row=row
            )
    _check_limits(f, arr)
    return arr


def _to_arrow(f: FieldSchema, values: Any) -> pa.Array:
    if f.dtype == DataType.JSON:
        return _json_column(f, values)
    if f.dtype == DataType.TIMESTAMPTZ:  # ISO text (naive = UTC here; the gateway applies zones)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not isinstance(values, pa.Array):
            values = pa.array([None if v is None else str(v) for v in values], pa.string())
        return parse_iso(values, "UTC", f.name)
    target = f.arrow_type()
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    try:
        if isinstance(values, pa.Array):
            if values.type != target:
                values = values.cast(target, safe=True)
            return values
        if isinstance(values, np.ndarray):
            return _numpy_to_arrow(f, values, target)
        return pa.array(_reject_bool_as_number(f, values), type=target, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError, ValueError) as exc:
        row, bad = _find_bad_value(f, values, target)
        raise ValidationError(
            f"field {f.name!r} expects {_type_name(f)}, but row {row} has {bad!r} ({type(bad).__name__})",
            field=f.name,
            row=row,
        ) from exc


def _numpy_to_arrow(f: FieldSchema, values: np.ndarray, target: pa.DataType) -> pa.Array:
    if f.dtype.is_integer and values.dtype.kind not in "iu":
        raise TypeError("not integers")
    if f.dtype == DataType.BOOL and values.dtype.kind != "b":
        raise TypeError("not booleans")
    if f.dtype in (DataType.FLOAT, DataType.DOUBLE) and values.dtype.kind not in "iuf":
        raise TypeError("not numbers")
    return pa.array(values).cast(target, safe=True)


def _reject_bool_as_number(f: FieldSchema, values: Sequence[Any]) -> Sequence[Any]:
    if f.dtype == DataType.ARRAY and f.element_type is not None and f.element_type.is_integer:
        for v in values:
            if isinstance(v, (list, tuple)) and any(
                isinstance(x, bool) or (isinstance(x, float) and not x.is_integer()) for x in v
            ):
                raise TypeError("non-integer element in an integer array")
    if f.dtype.is_numeric and any(isinstance(v, bool) for v in values):
        raise TypeError("bool given for a number")
    if f.dtype.is_integer and any(isinstance(v, (float, np.floating)) for v in values):
        raise TypeError("float given for an integer")
    if f.dtype == DataType.BOOL and any(
        v is not None and not isinstance(v, (bool, np.bool_)) for v in values
    ):
        raise TypeError("non-bool given for a bool")
    return values


def _find_bad_value(f: FieldSchema, values: Any, target: pa.DataType) -> tuple[int, Any]:
    """Error path only: find the first row that does not convert."""
    seq = values.to_pylist() if isinstance(values, (pa.Array, pa.ChunkedArray)) else list(values)
    for i, v in enumerate(seq):
        if v is None:
            continue
        try:
            _reject_bool_as_number(f, [v])
            pa.array([v], type=target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError, ValueError):
            return i, v
    return 0, seq[0] if seq else None


def _type_name(f: FieldSchema) -> str:
    if f.dtype == DataType.ARRAY:
        return f"ARRAY of {f.element_type.name if f.element_type else '?'}"
    return f.dtype.name


def _check_limits(f: FieldSchema, arr: pa.Array) -> None:
    if f.dtype == DataType.VARCHAR:
        _check_length(f, arr, f.max_length or 65_535, "max_length")
    elif f.dtype == DataType.ARRAY:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        over = np.flatnonzero(np.nan_to_num(lengths.astype(float), nan=0) > (f.max_capacity or 4096))
        if len(over):
            row = int(over[0])
            raise ValidationError(
                f"field {f.name!r}: row {row} has {int(lengths[row])} elements, over max_capacity "
                f"{f.max_capacity}",
                field=f.name,
                row=row,
            )
        if f.element_type == DataType.VARCHAR:
            _check_length(f, pc.list_flatten(arr), f.max_length or 65_535, "max_length of array elements")
    elif f.dtype in INTEGER_RANGES:
        pass  # the Arrow cast above already refused values outside the type's range


def _check_length(f: FieldSchema, arr: pa.Array, limit: int, what: str) -> None:
    lengths = pc.binary_length(arr).to_numpy(zero_copy_only=False)
    over = np.flatnonzero(np.nan_to_num(lengths.astype(float), nan=0) > limit)
    if len(over):
        row = int(over[0])
        raise ValidationError(
            f"length of varchar field {f.name} exceeds max length: row {row} is {int(lengths[row])} bytes "
            f"long, over {what} {limit}",
            field=f.name,
            row=row,
        )


def _json_column(f: FieldSchema, values: Any) -> pa.Array:
    """JSON values are stored as JSON text. Text or bytes given must already be valid JSON."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_pylist()
    out: list[str | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        try:
            if isinstance(v, (bytes, str)):
                orjson.loads(v)
                out.append(v.decode() if isinstance(v, bytes) else v)
            else:
                out.append(orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode())
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ValidationError(
                f"field {f.name!r}: row {i} is not valid JSON ({exc})", field=f.name, row=i
            ) from exc
    return pa.array(out, type=pa.string())


def _meta_column(values: Any, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, type=pa.string())
    fake = FieldSchema(name=META_FIELD, dtype=DataType.JSON, nullable=True)
    arr = _json_column(fake, values)
    return arr


__all__ = ["build_batch", "rows_to_columns", "check_unique_keys", "SCALAR_ARROW"]
