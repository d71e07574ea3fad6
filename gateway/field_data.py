"""Columns between Milvus ``FieldData`` messages and numpy / Arrow, without per-value Python loops.

Incoming: repeated numeric fields become numpy arrays (``np.array`` reads the protobuf
container directly), byte vectors are viewed in place, ``valid_data`` becomes an Arrow
null mask. Outgoing: floats are appended as packed bytes, which protobuf copies in one go.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pymilvus.grpc_gen import schema_pb2

from schemas.collection import META_FIELD, CollectionSchema, FieldSchema
from schemas.exceptions import ValidationError
from schemas.sparse import assemble, flat_parts
from schemas.timestamptz import format_iso, parse_iso, time_parts
from schemas.types import DataType

_SCALAR_ATTR: dict[DataType, tuple[str, Any]] = {
    DataType.BOOL: ("bool_data", np.bool_),
    DataType.INT8: ("int_data", np.int64),
    DataType.INT16: ("int_data", np.int64),
    DataType.INT32: ("int_data", np.int64),
    DataType.INT64: ("long_data", np.int64),
    DataType.FLOAT: ("float_data", np.float32),
    DataType.DOUBLE: ("double_data", np.float64),
    DataType.VARCHAR: ("string_data", None),
    DataType.JSON: ("json_data", None),
    DataType.TIMESTAMPTZ: ("string_data", None),  # ISO-8601 text both ways
}
_BYTE_VECTOR_ATTR = {
    DataType.BINARY_VECTOR: "binary_vector",
    DataType.FLOAT16_VECTOR: "float16_vector",
    DataType.BFLOAT16_VECTOR: "bfloat16_vector",
    DataType.INT8_VECTOR: "int8_vector",
}


def type_name(code: int) -> str:
    try:
        return schema_pb2.DataType.Name(code)
    except ValueError:
        return str(code)


# ------------------------------------------------------------------------------ incoming


def columns_from_field_data(
    schema: CollectionSchema, fields_data: Iterable[schema_pb2.FieldData], num_rows: int, zone: str = "UTC"
) -> dict[str, Any]:
    """The columns of an Insert/Upsert request, ready for ``schemas.validation.build_batch``.

    TIMESTAMPTZ text becomes UTC timestamps here; text without an offset is read in ``zone``."""
    cols: dict[str, Any] = {}
    for fd in fields_data:
        name = META_FIELD if fd.is_dynamic else fd.field_name
        if name in cols:
            raise ValidationError(f"field {name!r} appears twice in the request", field=name)
        if name == META_FIELD:
            cols[name] = _with_valid(fd, list(fd.scalars.json_data.data), num_rows, name)
            continue
        field = schema.field(name)
        if field is None:
            cols[name] = [None] * num_rows  # build_batch names the unknown field
            continue
        if fd.type and fd.type != field.dtype:
            raise ValidationError(
                f"field {name!r} is {field.dtype.name}, but the request carries {type_name(fd.type)} data",
                field=name,
            )
        if field.dtype.is_sparse:
            cols[name] = sparse_from_proto(field.name, fd.vectors, num_rows, fd.valid_data)
        elif field.dtype.is_vector and len(fd.valid_data):
            cols[name] = _nullable_vectors(field, fd, num_rows)
        elif field.dtype.is_vector:
            cols[name] = _vectors(field, fd, num_rows)
        elif field.dtype == DataType.ARRAY:
            cells = [_array_cell(sf) for sf in fd.scalars.array_data.data]
            cols[name] = _with_valid(fd, cells, num_rows, name)
        else:
            attr, dtype = _SCALAR_ATTR[field.dtype]
            data = getattr(fd.scalars, attr).data
            values = list(data) if dtype is None else np.array(data, dtype=dtype)
            cols[name] = _with_valid(fd, values, num_rows, name)
            if field.dtype == DataType.TIMESTAMPTZ:
                cols[name] = parse_iso(pa.array(cols[name], pa.string()), zone, name)
    return cols


def _array_cell(sf: schema_pb2.ScalarField) -> list[Any]:
    which = sf.WhichOneof("data")
    return [] if which is None else list(getattr(sf, which).data)


def _with_valid(fd: schema_pb2.FieldData, values: Any, n: int, name: str) -> Any:
    """Apply ``valid_data``: values may be given for every row or only for the valid ones."""
    if not len(fd.valid_data):
        return values
    valid = np.array(fd.valid_data, dtype=bool)
    if len(valid) != n:
        raise ValidationError(f"field {name!r}: valid_data has {len(valid)} entries for {n} rows", field=name)
    count = int(valid.sum())
    if len(values) not in (n, count):
        raise ValidationError(
            f"field {name!r} has {len(values)} values for {n} rows ({count} of them not null)", field=name
        )
    if isinstance(values, np.ndarray):
        if len(values) != n:
            full = np.zeros(n, dtype=values.dtype)
            full[valid] = values
            values = full
        return pa.array(values, mask=~valid)
    if len(values) == n:
        return [v if ok else None for v, ok in zip(values, valid.tolist(), strict=True)]
    it = iter(values)
    return [next(it) if ok else None for ok in valid.tolist()]


_PAIR = np.dtype([("index", "<u4"), ("value", "<f4")])


def sparse_rows_from_bytes(name: str, contents: Sequence[bytes], n: int) -> pa.StructArray:
    """Milvus's sparse rows (each packed little-endian uint32 index + float32 value pairs)."""
    if len(contents) != n:
        raise ValidationError(f"field {name!r} has {len(contents)} sparse vectors for {n} rows", field=name)
    lengths = np.fromiter((len(b) for b in contents), dtype=np.int64, count=len(contents))
    if np.any(lengths % _PAIR.itemsize):
        row = int(np.flatnonzero(lengths % _PAIR.itemsize)[0])
        raise ValidationError(
            f"field {name!r}: row {row} is not a list of (index, value) pairs", field=name, row=row
        )
    pairs = np.frombuffer(b"".join(contents), dtype=_PAIR)
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths // _PAIR.itemsize)
    return assemble(name, rows, pairs["index"].astype(np.int64), pairs["value"].astype(np.float64), n)


def sparse_from_proto(
    name: str, vectors: schema_pb2.VectorField, n: int, valid_data: Sequence[bool] = ()
) -> pa.StructArray:
    """Sparse rows; with ``valid_data`` (a nullable field) the rows given are those of the valid
    rows only, as pymilvus sends them, or one per row."""
    which = vectors.WhichOneof("data")
    contents = list(vectors.sparse_float_vector.contents)
    valid = np.array(valid_data, dtype=bool) if len(valid_data) else None
    if valid is not None and len(valid) != n:
        raise ValidationError(f"field {name!r}: valid_data has {len(valid)} entries for {n} rows", field=name)
    given = n if valid is None else int(valid.sum())
    if which != "sparse_float_vector" and not (which is None and given == 0):
        raise ValidationError(
            f"field {name!r} is SPARSE_FLOAT_VECTOR, but the request carries {which} data", field=name
        )
    if valid is None or valid.all():
        return sparse_rows_from_bytes(name, contents, n)
    if len(contents) == n:  # one per row: the null rows' are left out
        contents = [c for c, ok in zip(contents, valid.tolist(), strict=True) if ok]
    rows = sparse_rows_from_bytes(name, contents, given)
    row_ids, idx, val = flat_parts(rows)
    return assemble(name, np.flatnonzero(valid)[row_ids], idx, val.astype(np.float64), n, valid)


def _nullable_vectors(field: FieldSchema, fd: schema_pb2.FieldData, n: int) -> list[Any]:
    """A nullable vector field: ``valid_data`` per row, vectors only for the valid rows (as
    pymilvus sends them; vectors for every row are accepted too)."""
    valid = np.array(fd.valid_data, dtype=bool)
    if len(valid) != n:
        raise ValidationError(
            f"field {field.name!r}: valid_data has {len(valid)} entries for {n} rows", field=field.name
        )
    count = int(valid.sum())
    rows = _vectors(field, fd, count if _given_rows(field, fd) == count else n)
    if len(rows) == n:
        rows = rows[valid]
    it = iter(rows)
    return [next(it) if ok else None for ok in valid.tolist()]


def _given_rows(field: FieldSchema, fd: schema_pb2.FieldData) -> int:
    dim = int(field.dim or 0)
    which = fd.vectors.WhichOneof("data")
    if which is None:
        return 0
    if which == "float_vector":
        return len(fd.vectors.float_vector.data) // max(dim, 1)
    width = {DataType.BINARY_VECTOR: dim // 8, DataType.INT8_VECTOR: dim}.get(field.dtype, dim * 2)
    return len(getattr(fd.vectors, which)) // max(width, 1)


def _vectors(field: FieldSchema, fd: schema_pb2.FieldData, n: int) -> np.ndarray:
    dim = int(field.dim or 0)
    which = fd.vectors.WhichOneof("data")
    if which == "float_vector" and field.dtype != DataType.BINARY_VECTOR:
        flat = np.array(fd.vectors.float_vector.data, dtype=np.float32)
        width = dim
    elif which is not None and which == _BYTE_VECTOR_ATTR.get(field.dtype):
        raw_type = np.int8 if field.dtype == DataType.INT8_VECTOR else np.uint8
        flat = np.frombuffer(getattr(fd.vectors, which), dtype=raw_type)
        width = {DataType.BINARY_VECTOR: dim // 8, DataType.INT8_VECTOR: dim}.get(field.dtype, dim * 2)
    elif which is None:
        if n:
            raise ValidationError(f"vector field {field.name!r} has no data", field=field.name)
        return np.zeros((0, dim), dtype=np.float32)
    else:
        raise ValidationError(
            f"field {field.name!r} is {field.dtype.name}, but the request carries {which} data",
            field=field.name,
        )
    sent_dim = int(fd.vectors.dim)
    if (sent_dim and sent_dim != dim) or width == 0 or flat.size % width:
        raise ValidationError(
            f"the dim ({sent_dim or flat.size // max(n, 1)}) of field data({field.name}) is not equal to "
            f"schema dim ({dim})",
            field=field.name,
        )
    if flat.size != n * width:
        raise ValidationError(
            f"field {field.name!r} has {flat.size // width} vectors, but the request has {n} rows",
            field=field.name,
        )
    return flat.reshape(n, width)


# ------------------------------------------------------------------------------ outgoing


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def packed(field_number: int, values: np.ndarray) -> bytes:
    """The wire form of a packed repeated float/double field: protobuf parses it in one copy."""
    raw = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
    return _varint(field_number << 3 | 2) + _varint(len(raw)) + raw


def extend_floats(message: Any, values: np.ndarray, field_number: int = 1) -> None:
    """Append float32/float64 values to repeated field ``field_number`` of ``message``."""
    if len(values):
        message.MergeFromString(packed(field_number, values))


def field_data_from_column(
    name: str,
    column: pa.Array | pa.ChunkedArray,
    field: FieldSchema | None,
    zone: str = "UTC",
    time_fields: tuple[str, ...] = (),
) -> schema_pb2.FieldData:
    """One output column as FieldData; ``field`` None means ``$meta`` or a computed column.
    TIMESTAMPTZ values are written as ISO-8601 text in ``zone``, or, given ``time_fields``, as an
    array of int64: those components of the value in ``zone`` (year, month, ...)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if field is not None and field.dtype == DataType.TIMESTAMPTZ and time_fields:
        return _time_parts_out(name, field, time_parts(arr, zone, time_fields))
    if field is not None and field.dtype == DataType.TIMESTAMPTZ:
        arr = format_iso(arr, zone)
    if field is None and name == META_FIELD:
        fd = schema_pb2.FieldData(field_name=name, type=DataType.JSON, is_dynamic=True)
        fd.scalars.json_data.SetInParent()
        fd.scalars.json_data.data.extend(s.encode() for s in arr.fill_null("{}").to_pylist())
        return fd
    dtype = field.dtype if field is not None else _dtype_of(arr.type, name)
    fd = schema_pb2.FieldData(field_name=name, type=int(dtype))
    if field is not None:
        fd.field_id = field.field_id
    if dtype.is_vector:
        if arr.null_count:  # nullable vectors: valid_data per row, vectors of the valid rows only
            valid = arr.is_valid()
            fd.valid_data.extend(valid.to_numpy(zero_copy_only=False).tolist())
            arr = arr.filter(valid)
        _vector_out(fd, arr, field)
        return fd
    if arr.null_count:
        fd.valid_data.extend(arr.is_valid().to_numpy(zero_copy_only=False).tolist())
    if dtype == DataType.ARRAY:
        assert field is not None and field.element_type is not None
        attr = _SCALAR_ATTR[field.element_type][0]
        out = fd.scalars.array_data
        out.SetInParent()
        out.element_type = int(field.element_type)
        for cell in arr.to_pylist():
            sf = out.data.add()
            getattr(sf, attr).data.extend(cell or [])
        return fd
    attr, np_type = _SCALAR_ATTR[dtype]
    target = getattr(fd.scalars, attr)
    target.SetInParent()  # zero rows still name their type, as Milvus sends them
    if dtype == DataType.JSON:
        target.data.extend(s.encode() for s in arr.fill_null("null").to_pylist())
    elif np_type is None:
        target.data.extend(arr.fill_null("").to_pylist())
    elif dtype in (DataType.FLOAT, DataType.DOUBLE):
        values = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np_type, copy=False)
        extend_floats(target, values)
    elif arr.null_count == 0 and dtype != DataType.BOOL:
        target.data.extend(arr.to_numpy().tolist())
    else:
        target.data.extend(arr.fill_null(False if dtype == DataType.BOOL else 0).to_pylist())
    return fd


def _time_parts_out(name: str, field: FieldSchema, parts: pa.Array) -> schema_pb2.FieldData:
    fd = schema_pb2.FieldData(field_name=name, type=int(DataType.ARRAY), field_id=field.field_id)
    if parts.null_count:
        fd.valid_data.extend(parts.is_valid().to_numpy(zero_copy_only=False).tolist())
    out = fd.scalars.array_data
    out.SetInParent()
    out.element_type = int(DataType.INT64)
    for cell in parts.to_pylist():
        out.data.add().long_data.data.extend(cell or [])
    return fd


def _dtype_of(typ: pa.DataType, name: str) -> DataType:
    if pa.types.is_integer(typ):
        return DataType.INT64
    if pa.types.is_floating(typ):
        return DataType.DOUBLE
    if pa.types.is_boolean(typ):
        return DataType.BOOL
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return DataType.VARCHAR
    raise TypeError(f"output column {name!r} has unsupported type {typ}")


def _vector_out(fd: schema_pb2.FieldData, arr: pa.Array, field: FieldSchema | None) -> None:
    assert field is not None
    if field.dtype.is_sparse:
        rows, idx, val = flat_parts(arr)
        pairs = np.empty(len(idx), dtype=_PAIR)
        pairs["index"], pairs["value"] = idx, val
        raw = pairs.tobytes()
        sizes = np.bincount(rows, minlength=len(arr)) * _PAIR.itemsize
        ends = np.cumsum(sizes)
        starts = ends - sizes
        out = fd.vectors.sparse_float_vector
        out.SetInParent()
        out.contents.extend(raw[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True))
        out.dim = int(idx.max()) + 1 if len(idx) else 0
        fd.vectors.dim = out.dim
        return
    dim = int(field.dim or 0)
    fd.vectors.dim = dim
    if field.dtype == DataType.FLOAT_VECTOR:
        fd.vectors.float_vector.SetInParent()
        flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        fd.vectors.float_vector.SetInParent()
        extend_floats(fd.vectors.float_vector, flat)
        return
    attr = _BYTE_VECTOR_ATTR[field.dtype]
    if pa.types.is_fixed_size_binary(arr.type):
        width = arr.type.byte_width
        buf = arr.buffers()[1]
        raw = b"" if buf is None else buf.to_pybytes()[arr.offset * width : (arr.offset + len(arr)) * width]
    else:
        raw = b"".join(arr.to_pylist())
    setattr(fd.vectors, attr, raw)


def fields_data_from_table(
    table: pa.Table, names: Sequence[str], schema: CollectionSchema
) -> list[schema_pb2.FieldData]:
    """FieldData for the named columns of ``table``, in order."""
    out = []
    for name in names:
        if name not in table.column_names:
            raise KeyError(f"the searcher returned no column {name!r}")
        out.append(field_data_from_column(name, table.column(name), schema.field(name)))
    return out


def empty_column(field: FieldSchema | None) -> pa.Array:
    """A zero-row column of a field's Arrow type (``$meta`` when ``field`` is None)."""
    return pa.array([], type=pa.string() if field is None else field.arrow_type())
