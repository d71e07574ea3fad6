"""Sparse float vectors: the stored layout and the inputs clients send.

A sparse row is stored as ``struct<indices: list<int64>, values: list<float32>>``: its non-zero
dimensions in ascending order, each in ``[0, 2**32 - 1)``, and their values (see FORMAT.md).
Delta Lake has no unsigned type, so the uint32 dimensions are stored as int64.

Inputs accepted per row: a dict ``{dim: value}`` (keys may be strings of digits, as JSON
sends them), a list of ``(dim, value)`` pairs, a scipy sparse row (anything with ``tocoo()``),
or, for a whole column, a scipy sparse matrix or an Arrow array of the stored type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from schemas.exceptions import ValidationError
from schemas.types import SPARSE_ARROW

MAX_INDEX = 2**32 - 1  # exclusive, as Milvus


def sparse_column(name: str, rows: Any, n: int | None = None, nullable: bool = False) -> pa.StructArray:
    """Validate sparse rows into the stored layout (indices sorted per row, no duplicates). A row
    may be null (None) only in a ``nullable`` field."""
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    if isinstance(rows, pa.StructArray) and rows.type == SPARSE_ARROW:
        valid = rows.is_valid().to_numpy(zero_copy_only=False) if rows.null_count else None
        if valid is not None and not nullable:
            _not_nullable(name, int(np.flatnonzero(~valid)[0]))
        row_ids, idx, val = flat_parts(rows)
        return assemble(name, row_ids, idx, val, len(rows), valid)
    if hasattr(rows, "tocsr") and hasattr(rows, "shape") and len(getattr(rows, "shape", ())) == 2:
        coo = rows.tocoo()
        return assemble(
            name,
            np.asarray(coo.row, np.int64),
            np.asarray(coo.col, np.int64),
            np.asarray(coo.data, np.float64),
            int(rows.shape[0]),
        )
    rows = list(rows)
    counts = np.zeros(len(rows), np.int64)
    idx_parts: list[Any] = []
    val_parts: list[Any] = []
    valid = np.fromiter((r is not None for r in rows), dtype=bool, count=len(rows))
    if valid.all():
        valid = None
    elif not nullable:
        _not_nullable(name, int(np.flatnonzero(~valid)[0]))
    for i, row in enumerate(rows):
        if row is None:
            continue  # a null row of a nullable field: no entries
        idx, val = _row_pairs(name, i, row)
        counts[i] = len(idx)
        idx_parts.extend(idx)
        val_parts.extend(val)
    try:
        idx_arr = np.asarray(idx_parts, dtype=np.float64)
        val_arr = np.asarray(val_parts, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"field {name!r}: sparse indices and values must be numbers", field=name
        ) from exc
    row_ids = np.repeat(np.arange(len(rows), dtype=np.int64), counts)
    if len(idx_arr) and (np.any(idx_arr != np.floor(idx_arr)) or not np.isfinite(idx_arr).all()):
        row = int(row_ids[np.flatnonzero((idx_arr != np.floor(idx_arr)) | ~np.isfinite(idx_arr))[0]])
        raise ValidationError(
            f"field {name!r}: row {row} has a sparse index that is not an integer", field=name, row=row
        )
    return assemble(name, row_ids, idx_arr.astype(np.int64), val_arr, len(rows), valid)


def _not_nullable(name: str, row: int) -> None:
    raise ValidationError(
        f"field {name!r} is not nullable, but row {row} is null (a nullable sparse field takes null rows)",
        field=name,
        row=row,
    )


def _row_pairs(name: str, i: int, row: Any) -> tuple[list[Any], list[Any]]:
    if isinstance(row, dict):
        try:
            return [int(k) for k in row], list(row.values())
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"field {name!r}: row {i} has a sparse index that is not an integer", field=name, row=i
            ) from exc
    if hasattr(row, "tocoo"):
        coo = row.tocoo()
        if coo.shape[0] != 1:
            raise ValidationError(
                f"field {name!r}: row {i} is a sparse matrix of {coo.shape[0]} rows", field=name, row=i
            )
        return coo.col.tolist(), coo.data.tolist()
    if isinstance(row, (list, tuple)):
        if all(isinstance(p, (list, tuple)) and len(p) == 2 for p in row):
            return [p[0] for p in row], [p[1] for p in row]
    raise ValidationError(
        f"field {name!r}: row {i} is not a sparse vector (a dict of index: value, a list of (index, value) "
        f"pairs or a scipy sparse row): {str(row)[:60]!r}",
        field=name,
        row=i,
    )


def assemble(
    name: str, row_ids: np.ndarray, idx: np.ndarray, val: np.ndarray, n: int, valid: np.ndarray | None = None
) -> pa.StructArray:
    """The stored layout of the entries (``row_ids``, ``idx``, ``val``) of ``n`` rows; ``valid``
    False marks a null row (it has no entries)."""
    bad = (idx < 0) | (idx >= MAX_INDEX)
    if bad.any():
        row = int(row_ids[np.flatnonzero(bad)[0]])
        raise ValidationError(
            f"field {name!r}: row {row} has sparse index {int(idx[bad][0])}, outside [0, {MAX_INDEX})",
            field=name,
            row=row,
        )
    if not np.isfinite(val).all():
        row = int(row_ids[np.flatnonzero(~np.isfinite(val))[0]])
        raise ValidationError(f"field {name!r}: row {row} has a NaN or infinite value", field=name, row=row)
    order = np.lexsort((idx, row_ids))
    row_ids, idx, val = row_ids[order], idx[order], val[order].astype(np.float32)
    dup = (np.diff(row_ids) == 0) & (np.diff(idx) == 0)
    if dup.any():
        row = int(row_ids[np.flatnonzero(dup)[0]])
        raise ValidationError(f"field {name!r}: row {row} names one sparse index twice", field=name, row=row)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(np.bincount(row_ids, minlength=n), out=offsets[1:])
    off = pa.array(offsets, pa.int32())
    return pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(off, pa.array(idx, pa.int64())),
            pa.ListArray.from_arrays(off, pa.array(val, pa.float32())),
        ],
        fields=list(SPARSE_ARROW),
        mask=None if valid is None else pa.array(~valid),
    )


def flat_parts(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row of each entry, indices int64, values float32) of a stored sparse column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    indices, values = column.flatten()  # children with the parent's offset (a slice) applied
    lengths = indices.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    row_ids = np.repeat(np.arange(len(column), dtype=np.int64), lengths)
    idx = indices.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    val = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return row_ids, idx, val


def rows_as_dicts(column: pa.Array) -> list[dict[int, float]]:
    """Stored sparse rows as ``{index: value}`` dicts (what pymilvus returns)."""
    return [dict(zip(r["indices"], r["values"], strict=True)) for r in column.to_pylist()]


def empty_sparse(n: int) -> pa.StructArray:
    return assemble("", np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64), n)


SparseQuery = tuple[np.ndarray, np.ndarray]  # (indices int64 sorted unique, values float32)


def drop_small(query: SparseQuery, ratio: float) -> SparseQuery:
    """Milvus's drop_ratio_search: leave out the query's smallest ``ratio`` share of values."""
    terms, vals = query
    if ratio <= 0 or len(vals) == 0:
        return query
    cut = np.quantile(np.abs(vals), ratio)
    keep = np.abs(vals) >= cut
    return terms[keep], vals[keep]


def queries_of(column: pa.Array) -> list[SparseQuery]:
    """The rows of a sparse column (the stored layout) as queries."""
    rows, idx, val = flat_parts(column)
    bounds = np.searchsorted(rows, np.arange(len(column) + 1))
    return [
        (idx[bounds[i] : bounds[i + 1]], val[bounds[i] : bounds[i + 1]].astype(np.float64))
        for i in range(len(column))
    ]


class SparseQueries:
    """A batch of sparse queries; indexable like the dense (nq, dim) query matrices."""

    def __init__(self, items: list[SparseQuery]) -> None:
        self.items = items

    @classmethod
    def from_column(cls, column: pa.Array) -> SparseQueries:
        return cls(queries_of(column))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.items), 0)

    def __getitem__(self, which: object) -> SparseQueries:
        if isinstance(which, slice):
            return SparseQueries(self.items[which])
        return SparseQueries([self.items[int(i)] for i in np.asarray(which).reshape(-1)])
