"""Milvus data types and their Arrow storage types."""

from __future__ import annotations

from enum import IntEnum

import pyarrow as pa


class DataType(IntEnum):
    """Same numbers as Milvus's ``schema.proto`` DataType, so they travel unchanged."""

    NONE = 0
    BOOL = 1
    INT8 = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    FLOAT = 10
    DOUBLE = 11
    STRING = 20
    VARCHAR = 21
    ARRAY = 22
    JSON = 23
    TIMESTAMPTZ = 26  # microseconds since the epoch, UTC (schemas/timestamptz.py)
    BINARY_VECTOR = 100
    FLOAT_VECTOR = 101
    FLOAT16_VECTOR = 102
    BFLOAT16_VECTOR = 103
    SPARSE_FLOAT_VECTOR = 104
    INT8_VECTOR = 105

    @property
    def is_vector(self) -> bool:
        return self in VECTOR_TYPES

    @property
    def is_sparse(self) -> bool:
        return self == DataType.SPARSE_FLOAT_VECTOR

    @property
    def has_index_file(self) -> bool:
        """Dense vectors get a FAISS file per sealed segment; sparse ones are searched through an
        inverted index the searcher builds in memory (``indexer/sparse.py``)."""
        return self in VECTOR_TYPES and self != DataType.SPARSE_FLOAT_VECTOR

    @property
    def is_integer(self) -> bool:
        return self in (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT64)

    @property
    def is_numeric(self) -> bool:
        return self.is_integer or self in (DataType.FLOAT, DataType.DOUBLE)


VECTOR_TYPES = frozenset(
    {
        DataType.FLOAT_VECTOR,
        DataType.FLOAT16_VECTOR,
        DataType.BFLOAT16_VECTOR,
        DataType.INT8_VECTOR,
        DataType.BINARY_VECTOR,
        DataType.SPARSE_FLOAT_VECTOR,
    }
)

# A sparse row: its non-zero dimensions (ascending, unique, each < 2**32 - 1) and their values.
# Delta Lake has no unsigned integers, so the indices are int64 (every uint32 fits exactly).
SPARSE_ARROW = pa.struct(
    [pa.field("indices", pa.list_(pa.int64())), pa.field("values", pa.list_(pa.float32()))]
)

SCALAR_ARROW: dict[DataType, pa.DataType] = {
    DataType.BOOL: pa.bool_(),
    DataType.INT8: pa.int8(),
    DataType.INT16: pa.int16(),
    DataType.INT32: pa.int32(),
    DataType.INT64: pa.int64(),
    DataType.FLOAT: pa.float32(),
    DataType.DOUBLE: pa.float64(),
    DataType.VARCHAR: pa.string(),
    DataType.STRING: pa.string(),
    DataType.JSON: pa.string(),  # JSON text; Delta has no JSON type
    DataType.TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),  # Delta type `timestamp`
}

INTEGER_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.INT8: (-(2**7), 2**7 - 1),
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
}


def vector_arrow_type(dtype: DataType, dim: int) -> pa.DataType:
    """Vectors in flight (WAL records, searcher memory): fixed-size float32 lists, or fixed-size
    binary for 16-bit and bit vectors."""
    if dtype == DataType.FLOAT_VECTOR:
        return pa.list_(pa.float32(), dim)
    if dtype in (DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR):
        return pa.binary(dim * 2)
    if dtype == DataType.INT8_VECTOR:  # one signed byte per dimension, stored as such
        return pa.binary(dim)
    if dtype == DataType.BINARY_VECTOR:
        return pa.binary(dim // 8)
    if dtype == DataType.SPARSE_FLOAT_VECTOR:
        return SPARSE_ARROW
    raise ValueError(f"{dtype.name} is not a supported vector type")


def delta_vector_type(dtype: DataType) -> pa.DataType:
    """Vectors in the Parquet files of a Delta table: variable-size, as the Delta schema says.

    Delta has no fixed-size list or binary type: a table written with them says ``array<float>``
    or ``binary`` while its files say otherwise, and readers that trust the Delta schema (polars)
    refuse the files. walvus readers cast back to ``vector_arrow_type`` (dim comes from the schema).
    """
    if dtype == DataType.FLOAT_VECTOR:
        return pa.list_(pa.float32())
    if dtype in (
        DataType.FLOAT16_VECTOR,
        DataType.BFLOAT16_VECTOR,
        DataType.INT8_VECTOR,
        DataType.BINARY_VECTOR,
    ):
        return pa.binary()
    if dtype == DataType.SPARSE_FLOAT_VECTOR:
        return SPARSE_ARROW  # a struct of variable-size lists already
    raise ValueError(f"{dtype.name} is not a supported vector type")
