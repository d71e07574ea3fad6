"""WAL records: one Arrow IPC stream per record, the header in the schema metadata."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

from schemas.collection import PARTITION_COLUMN, CollectionSchema, FieldSchema, validate_schema
from schemas.exceptions import RecordFormatError
from schemas.types import DataType as D
from schemas.validation import build_batch, rows_to_columns
from schemas.wal import FORMAT_VERSION, HEADER_KEY, Op, WalHeader, WalRecord

SCHEMA = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("id", D.INT64, is_primary=True),
            FieldSchema("b", D.BOOL, nullable=True),
            FieldSchema("i8", D.INT8, nullable=True),
            FieldSchema("i16", D.INT16, nullable=True),
            FieldSchema("i32", D.INT32, nullable=True),
            FieldSchema("i64", D.INT64, nullable=True),
            FieldSchema("f", D.FLOAT, nullable=True),
            FieldSchema("d", D.DOUBLE, nullable=True),
            FieldSchema("s", D.VARCHAR, max_length=32, nullable=True),
            FieldSchema("j", D.JSON, nullable=True),
            FieldSchema("ai", D.ARRAY, element_type=D.INT64, max_capacity=4, nullable=True),
            FieldSchema("af", D.ARRAY, element_type=D.DOUBLE, max_capacity=4, nullable=True),
            FieldSchema("as_", D.ARRAY, element_type=D.VARCHAR, max_capacity=4, max_length=8, nullable=True),
            FieldSchema("ab", D.ARRAY, element_type=D.BOOL, max_capacity=4, nullable=True),
            FieldSchema("fv", D.FLOAT_VECTOR, dim=3),
            FieldSchema("hv", D.FLOAT16_VECTOR, dim=3),
            FieldSchema("bfv", D.BFLOAT16_VECTOR, dim=3),
            FieldSchema("bv", D.BINARY_VECTOR, dim=24),
        ),
        enable_dynamic_field=True,
    )
)


def full_batch() -> pa.RecordBatch:
    rng = np.random.default_rng(0)
    rows = [
        {
            "id": -(2**63),
            "b": True,
            "i8": -128,
            "i16": 32767,
            "i32": -(2**31),
            "i64": 2**63 - 1,
            "f": 1.25,
            "d": 1e300,
            "s": "héllo ✓",
            "j": {"a": [1, {"b": None}], "u": "ü"},
            "ai": [1, -2, 3],
            "af": [0.5],
            "as_": ["x", ""],
            "ab": [True, False],
            "extra": {"k": 1},
        },
        {"id": 0},  # every nullable column null, no dynamic keys
        {"id": 2**63 - 1, "s": "", "ai": [], "j": [], "b": False},
    ]
    cols = rows_to_columns(SCHEMA, rows)
    cols["fv"] = rng.standard_normal((3, 3)).astype(np.float32)
    cols["hv"] = rng.standard_normal((3, 3)).astype(np.float32)
    cols["bfv"] = rng.standard_normal((3, 3)).astype(np.float32)
    cols["bv"] = rng.integers(0, 256, (3, 3), dtype=np.uint8)
    return build_batch(SCHEMA, cols, op="upsert")


def header(op: Op, **kw) -> WalHeader:
    return WalHeader(op=op, collection="coll", collection_id=17, schema_version=3, ts=(123 << 18) | 5, **kw)


def roundtrip(rec: WalRecord) -> WalRecord:
    raw = rec.encode()
    assert isinstance(raw, bytes)
    back = WalRecord.decode(raw)
    assert back.header == rec.header
    assert WalRecord.decode(memoryview(raw)).header == rec.header  # memoryviews decode too
    return back


@pytest.mark.parametrize("op", [Op.INSERT, Op.UPSERT])
def test_data_records_roundtrip_every_type(op: Op) -> None:
    batch = full_batch()
    back = roundtrip(WalRecord(header(op, partition="p1", origin="site-a"), batch))
    assert back.num_rows == 3
    assert back.batch.equals(batch)
    assert back.batch.schema.equals(batch.schema)
    assert back.batch.schema.metadata is None  # the header is not left in the data schema
    assert back.batch.to_pylist() == batch.to_pylist()
    got = back.batch.to_pylist()
    assert got[1]["s"] is None and got[1]["ai"] is None and got[1]["j"] is None
    assert got[2]["ai"] == [] and got[2]["s"] == ""


def test_user_schema_metadata_survives_and_header_does_not_leak() -> None:
    batch = full_batch().replace_schema_metadata({b"mine": b"1"})
    back = roundtrip(WalRecord(header(Op.INSERT), batch))
    assert back.batch.schema.metadata == {b"mine": b"1"}
    assert HEADER_KEY not in (back.batch.schema.metadata or {})


def test_partition_column_travels() -> None:
    b = pa.record_batch(
        {"id": pa.array([1, 2], pa.int64()), PARTITION_COLUMN: pa.array(["_default_0", "_default_3"])}
    )
    back = roundtrip(WalRecord(header(Op.INSERT), b))
    assert back.batch.column(PARTITION_COLUMN).to_pylist() == ["_default_0", "_default_3"]


@pytest.mark.parametrize("keys", [pa.array([1, 5, -9], pa.int64()), pa.array(["a", "", "ü"], pa.string())])
def test_delete_record_roundtrip(keys: pa.Array) -> None:
    b = pa.record_batch({"pk": keys})
    back = roundtrip(WalRecord(header(Op.DELETE, partition="p"), b))
    assert back.header.op == Op.DELETE and back.header.partition == "p"
    assert back.batch.equals(b)


def test_flush_record_roundtrip() -> None:
    rec = WalRecord(header(Op.FLUSH, flush_id="f-1", origin="o"))
    back = roundtrip(rec)
    assert back.batch is None and back.num_rows == 0
    assert back.header.flush_id == "f-1" and back.header.version == FORMAT_VERSION
    assert back.header.op is Op.FLUSH


def test_with_header_keeps_the_batch() -> None:
    rec = WalRecord(header(Op.INSERT), full_batch())
    moved = rec.with_header(origin="site-b", ts=7)
    assert moved.header.origin == "site-b" and moved.header.ts == 7 and moved.batch is rec.batch
    assert roundtrip(moved).batch.equals(rec.batch)


def test_header_json_is_plain_json() -> None:
    h = header(Op.UPSERT, partition="p")
    d = json.loads(h.to_json())
    assert d["op"] == "upsert" and d["collection_id"] == 17 and d["version"] == FORMAT_VERSION
    assert WalHeader.from_json(h.to_json()) == h


def _ipc_with_meta(meta: dict[bytes, bytes] | None) -> bytes:
    sch = pa.schema([("x", pa.int64())], metadata=meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, sch) as w:
        w.write_batch(pa.record_batch({"x": [1]}, schema=sch))
    return sink.getvalue().to_pybytes()


GOOD = WalRecord(header(Op.INSERT), pa.record_batch({"id": pa.array(range(100), pa.int64())})).encode()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"garbage", id="garbage"),
        pytest.param(b'{"op": "insert"}', id="json"),
        pytest.param(os.urandom(512), id="random"),
        pytest.param(GOOD[: len(GOOD) // 2], id="truncated-half"),
        pytest.param(GOOD[:-10], id="truncated-body"),
        pytest.param(_ipc_with_meta(None), id="arrow-without-header"),
        pytest.param(_ipc_with_meta({HEADER_KEY: b"{not json"}), id="header-not-json"),
        pytest.param(_ipc_with_meta({HEADER_KEY: b"\xff\xfe"}), id="header-not-utf8"),
        pytest.param(_ipc_with_meta({HEADER_KEY: b"[1, 2]"}), id="header-a-list"),
        pytest.param(_ipc_with_meta({HEADER_KEY: b'{"op": "insert"}'}), id="header-missing-keys"),
        pytest.param(
            _ipc_with_meta(
                {HEADER_KEY: b'{"op":"merge","collection":"c","collection_id":1,"schema_version":1,"ts":1}'}
            ),
            id="header-unknown-op",
        ),
    ],
)
def test_garbage_raises_record_format_error(raw: bytes) -> None:
    with pytest.raises(RecordFormatError, match="not a walvus WAL record") as info:
        WalRecord.decode(raw)
    assert isinstance(info.value, ValueError) and info.value.code == 1100
