"""Vector columns of a batch: float, float16/bfloat16, int8 and binary vectors, also nullable.

Values come as numpy matrices, lists of rows, bytes per row or Arrow arrays; each becomes the
field's WAL Arrow type (``FieldSchema.arrow_type``) or a ``ValidationError`` naming the row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.collection import FieldSchema
from schemas.exceptions import ValidationError
from schemas.types import DataType


def vector_column(f: FieldSchema, values: Any, n: int) -> pa.Array:
    """The field's vectors; a nullable (dense) field's ``None`` rows become nulls."""
    return _nullable_vector_column(f, values, n) if f.nullable else _vector_column(f, values, n)


def first_null(arr: pa.Array) -> int:
    return int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])


def _nullable_vector_column(f: FieldSchema, values: Any, n: int) -> pa.Array:
    """A nullable (added) vector field: null rows are checked as zero vectors, then made null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if not values.null_count:
            return _vector_column(f, values, n)
        valid = values.is_valid()
        if pa.types.is_fixed_size_list(values.type):
            dense: Any = pa.FixedSizeListArray.from_arrays(
                values.values.slice(values.offset * values.type.list_size, n * values.type.list_size),
                values.type.list_size,
            )
            dense = pc.if_else(valid, dense, _zero_vectors(f, n))
        elif pa.types.is_fixed_size_binary(values.type):
            dense = pc.if_else(valid, values, _zero_vectors(f, n))
        else:
            dense = values.to_pylist()
            zero = _zero_vectors(f, 1).to_pylist()[0]
            dense = [zero if v is None else v for v in dense]
    else:
        rows = list(values)
        valid = pa.array([v is not None for v in rows])
        if not rows or all(v is not None for v in rows):
            return _vector_column(f, values, n)
        first = next(v for v in rows if v is not None)
        zero = (
            bytes(len(first)) if isinstance(first, (bytes, bytearray)) else np.zeros_like(np.asarray(first))
        )
        dense = [zero if v is None else v for v in rows]
        if not isinstance(first, (bytes, bytearray)):
            kind = np.asarray(first).dtype
            mats = [
                np.frombuffer(v, dtype=kind) if isinstance(v, (bytes, bytearray)) else np.asarray(v)
                for v in dense
            ]
            if len({m.shape for m in mats}) != 1:
                raise ValidationError(f"field {f.name!r}: vectors of different lengths", field=f.name)
            dense = np.stack(mats)
    arr = _vector_column(f, dense, n)
    return pc.if_else(valid, arr, pa.nulls(n, arr.type))


def _zero_vectors(f: FieldSchema, n: int) -> pa.Array:
    target = f.arrow_type()
    if pa.types.is_fixed_size_list(target):
        return pa.FixedSizeListArray.from_arrays(
            pa.array(np.zeros(n * int(f.dim or 0), np.float32)), int(f.dim or 0)
        )
    return pa.array([bytes(target.byte_width)] * n, type=target)


def _vector_column(f: FieldSchema, values: Any, n: int) -> pa.Array:
    dim = int(f.dim or 0)
    target = f.arrow_type()
    if f.dtype == DataType.FLOAT_VECTOR:
        mat = _float_matrix(f, values, n, dim)
        flat = pa.array(mat.reshape(-1), type=pa.float32())
        return pa.FixedSizeListArray.from_arrays(flat, dim)
    width = target.byte_width
    if isinstance(values, np.ndarray) and values.ndim == 2:
        if f.dtype == DataType.BINARY_VECTOR:
            values = values.astype(np.uint8, copy=False)
        elif f.dtype == DataType.INT8_VECTOR:
            values = _int8_matrix(f, values)
        elif values.dtype.kind == "f":
            values = values.astype(np.float16 if f.dtype == DataType.FLOAT16_VECTOR else np.float32)
            if f.dtype == DataType.BFLOAT16_VECTOR:
                values = (values.view(np.uint32) >> 16).astype(np.uint16)
        buf = np.ascontiguousarray(values).view(np.uint8).reshape(n, -1)
        if buf.shape[1] != width:
            raise ValidationError(
                f"field {f.name!r} expects vectors of dim {dim} ({width} bytes), got {buf.shape[1]} bytes",
                field=f.name,
            )
        return pa.FixedSizeBinaryArray.from_buffers(target, n, [None, pa.py_buffer(buf.tobytes())])
    out = list(values)
    if f.dtype == DataType.INT8_VECTOR and out and not isinstance(out[0], (bytes, bytearray)):
        try:
            mat = np.asarray([np.asarray(v) for v in out])
        except ValueError as exc:
            raise ValidationError(f"field {f.name!r}: rows of different lengths", field=f.name) from exc
        if mat.ndim != 2:
            raise ValidationError(f"field {f.name!r} expects rows of {dim} int8 values", field=f.name)
        return _vector_column(f, mat, n)
    for i, v in enumerate(out):
        if not isinstance(v, (bytes, bytearray)) or len(v) != width:
            got = len(v) if isinstance(v, (bytes, bytearray)) else type(v).__name__
            raise ValidationError(
                f"field {f.name!r} expects {width}-byte vectors (dim {dim}), row {i} has {got}",
                field=f.name,
                row=i,
            )
    return pa.array(out, type=target)


def _int8_matrix(f: FieldSchema, values: np.ndarray) -> np.ndarray:
    """INT8_VECTOR rows given as numbers: every value must be an integer in [-128, 127]."""
    if values.dtype == np.int8:
        return values
    if values.dtype.kind not in "iuf" or (
        values.size
        and (
            not np.isfinite(values).all()
            or (values != np.round(values)).any()
            or values.min() < -128
            or values.max() > 127
        )
    ):
        raise ValidationError(
            f"field {f.name!r} holds INT8_VECTOR: values must be integers in [-128, 127]", field=f.name
        )
    return values.astype(np.int8)


def _float_matrix(f: FieldSchema, values: Any, n: int, dim: int) -> np.ndarray:
    if isinstance(values, pa.FixedSizeListArray):
        if values.type.list_size != dim:
            raise ValidationError(
                f"field {f.name!r} expects dim {dim}, got vectors of dim {values.type.list_size}",
                field=f.name,
            )
        if values.null_count:
            raise ValidationError(f"field {f.name!r}: row {first_null(values)} is null", field=f.name)
        return values.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, dim)
    if isinstance(values, np.ndarray) and values.ndim == 2 and values.dtype.kind in "iuf":
        if values.shape[1] != dim:
            raise ValidationError(
                f"field {f.name!r} expects dim {dim}, got vectors of dim {values.shape[1]}", field=f.name
            )
        mat = values.astype(np.float32, copy=False)
    else:
        try:
            mat = np.asarray(values, dtype=np.float32)
        except (ValueError, TypeError) as exc:
            row, why = _bad_vector_row(values, dim)
            raise ValidationError(f"field {f.name!r}: row {row} {why}", field=f.name, row=row) from exc
        if mat.ndim != 2 or mat.shape[1] != dim:
            row, why = _bad_vector_row(values, dim)
            raise ValidationError(f"field {f.name!r}: row {row} {why}", field=f.name, row=row)
    if not np.isfinite(mat).all():
        row = int(np.flatnonzero(~np.isfinite(mat).all(axis=1))[0])
        raise ValidationError(
            f"field {f.name!r}: row {row} has NaN or infinite values", field=f.name, row=row
        )
    return mat


def _bad_vector_row(values: Any, dim: int) -> tuple[int, str]:
    for i, v in enumerate(values):
        if v is None:
            return i, "is null; vectors cannot be null"
        try:
            arr = np.asarray(v, dtype=np.float32)
        except (ValueError, TypeError):
            return i, f"is not a list of numbers: {str(v)[:60]!r}"
        if arr.ndim != 1 or arr.shape[0] != dim:
            return i, f"has dim {arr.shape[0] if arr.ndim == 1 else arr.shape}, expected dim {dim}"
    return 0, f"does not have dim {dim}"
