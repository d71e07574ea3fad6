"""walvus rows tables are plain Delta tables: polars' native reader, pyarrow and DuckDB read every
stored type, the live-rows SQL matches walvus's rule, and tables written before vectors were stored
variable-size stay readable by walvus.

Real Delta tables in tmp_path, written by the real SegmentWriter; no Kafka.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from schemas.catalog import CollectionInfo
from schemas.collection import CollectionSchema, FieldSchema, validate_schema
from schemas.live import live_rows_sql, stored_alive
from schemas.stored_rows import conform, with_system_columns
from schemas.types import DataType as D
from schemas.validation import build_batch, rows_to_columns
from schemas.vector_arrays import arrow_vectors
from schemas.wal import Op, WalHeader, WalRecord
from streams.growing import BufferedRecord
from streams.live import live_rows
from streams.segment_writer import SegmentWriter
from walvus.storage import DELETES, ROWS, SegmentStore

CID = 11
DIM = 8
SCHEMA = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("id", D.INT64, is_primary=True),
            FieldSchema("vec", D.FLOAT_VECTOR, dim=DIM),
            FieldSchema("half", D.FLOAT16_VECTOR, dim=DIM),
            FieldSchema("brain", D.BFLOAT16_VECTOR, dim=DIM),
            FieldSchema("bits", D.BINARY_VECTOR, dim=16),
            FieldSchema("flag", D.BOOL),
            FieldSchema("i8", D.INT8),
            FieldSchema("i16", D.INT16),
            FieldSchema("i32", D.INT32),
            FieldSchema("i64", D.INT64),
            FieldSchema("f32", D.FLOAT),
            FieldSchema("f64", D.DOUBLE),
            FieldSchema("name", D.VARCHAR, max_length=32, nullable=True),
            FieldSchema("doc", D.JSON),
            FieldSchema("tags", D.ARRAY, element_type=D.VARCHAR, max_capacity=4, max_length=8),
            FieldSchema("nums", D.ARRAY, element_type=D.INT32, max_capacity=4),
        ),
        enable_dynamic_field=True,
    )
)
INFO = CollectionInfo("readers", CID, SCHEMA, shards_num=2, partitions={"_default": 0, "p1": 1})


def bfloat16(x: np.ndarray) -> bytes:
    """bfloat16 bytes: the upper half of each float32."""
    return (x.view(np.uint32) >> 16).astype(np.uint16).tobytes()


def rows_of(ids: list[int], version: int) -> list[dict]:
    rng = np.random.default_rng(version * 1000 + ids[0])
    return [
        {
            "id": i,
            "vec": rng.random(DIM, dtype=np.float32).tolist(),
            "half": rng.random(DIM, dtype=np.float32).astype(np.float16).tobytes(),
            "brain": bfloat16(rng.random(DIM, dtype=np.float32)),
            "bits": bytes([i % 256, version % 256]),
            "flag": i % 2 == 0,
            "i8": i % 100,
            "i16": i,
            "i32": i * 10,
            "i64": i * 100,
            "f32": i / 2,
            "f64": i / 3,
            "name": None if i % 5 == 0 else f"v{version}",
            "doc": {"k": i, "v": version},
            "tags": ["a", "b"][: i % 3],
            "nums": [i, version],
            "color": "red" if i % 2 else "blue",  # a dynamic field: $meta
        }
        for i in ids
    ]


def write(op: Op, offset: int, ids: list[int], version: int = 0, partition: str | None = None) -> WalRecord:
    header = WalHeader(op, "readers", CID, 1, ts=1000 + offset, partition=partition)
    if op == Op.DELETE:
        return WalRecord(header, pa.record_batch({"id": pa.array(ids, pa.int64())}))
    if op == Op.DROP_PARTITION:
        return WalRecord(header)
    return WalRecord(header, build_batch(SCHEMA, rows_to_columns(SCHEMA, rows_of(ids, version)), op=str(op)))


@pytest.fixture
def store(tmp_path: Path) -> SegmentStore:
    return SegmentStore(str(tmp_path / "tables"))


def seal(store: SegmentStore, shard: int, records: list[tuple[int, WalRecord]]) -> None:
    writer = SegmentWriter(store, lambda cid: INFO if cid == CID else None)
    writer.commit(CID, shard, [BufferedRecord(off, rec) for off, rec in records])


def history(store: SegmentStore) -> None:
    """Inserts, upserts, deletes by key, a partition drop, over two shards and several seals."""
    seal(store, 0, [(0, write(Op.INSERT, 0, [0, 2, 4, 6, 8])), (1, write(Op.INSERT, 1, [10, 12], 0, "p1"))])
    seal(store, 0, [(2, write(Op.UPSERT, 2, [2, 4], 1)), (3, write(Op.DELETE, 3, [6]))])
    seal(
        store,
        0,
        [(4, write(Op.DROP_PARTITION, 4, [], partition="p1")), (5, write(Op.INSERT, 5, [12], 2, "p1"))],
    )
    seal(store, 1, [(0, write(Op.INSERT, 0, [1, 3, 5])), (1, write(Op.DELETE, 1, [3, 99]))])
    seal(store, 1, [(2, write(Op.INSERT, 2, [3], 3)), (3, write(Op.UPSERT, 3, [5], 4))])


def test_parquet_files_say_what_the_delta_schema_says(store: SegmentStore) -> None:
    history(store)
    dt = store.open(CID, ROWS)
    assert dt is not None
    import pyarrow.parquet as pq

    for uri in dt.file_uris():
        types = pq.read_schema(uri.removeprefix("file://"))
        assert types.field("vec").type == pa.list_(pa.float32())
        for name in ("half", "brain", "bits"):
            assert types.field(name).type == pa.binary()


def test_polars_pyarrow_and_duckdb_read_every_stored_type(store: SegmentStore) -> None:
    history(store)
    uri = store.table_uri(CID, ROWS)
    native = pl.read_delta(uri)  # polars' own Parquet reader, checked against the Delta schema
    assert native.height == 15 and set(SCHEMA.stored_arrow_schema().names) <= set(native.columns)
    assert native.schema["vec"] == pl.List(pl.Float32)
    assert native.schema["half"] == pl.Binary
    assert native.schema["nums"] == pl.List(pl.Int32)
    arrow = DeltaTable(uri).to_pyarrow_table()
    assert arrow.num_rows == 15
    duck = duckdb.sql("SELECT count(*), sum(len(vec)), sum(octet_length(bits)) FROM arrow").fetchall()[0]
    assert duck == (15, 15 * DIM, 15 * 2)
    one = native.filter(
        (pl.col("id") == 4) & (pl.col("_seq") == native.filter(pl.col("id") == 4)["_seq"].max())
    )
    expect = rows_of([2, 4], 1)[1]
    assert np.allclose(one["vec"][0].to_list(), expect["vec"])
    assert one["half"][0] == expect["half"] and one["brain"][0] == expect["brain"]
    assert json.loads(one["doc"][0]) == {"k": 4, "v": 1}
    assert json.loads(one["$meta"][0]) == {"color": "blue"}


def test_live_rows_sql_equals_walvus_rule(store: SegmentStore) -> None:
    history(store)
    walvus = live_rows(store, INFO)
    expected = sorted(zip(walvus.column("id").to_pylist(), walvus.column("_seq").to_pylist(), strict=True))
    # 6 deleted, 3 deleted then re-inserted, p1's 10 and first 12 dropped, 12 re-inserted after
    assert [k for k, _ in expected] == [0, 1, 2, 3, 4, 5, 8, 12]
    sql = live_rows_sql("id")
    rows = DeltaTable(store.table_uri(CID, ROWS)).to_pyarrow_dataset()  # noqa: F841 - DuckDB scans it
    deletes = DeltaTable(store.table_uri(CID, DELETES)).to_pyarrow_dataset()  # noqa: F841
    by_duckdb = duckdb.sql(f"SELECT id, _seq FROM ({sql}) ORDER BY id, _seq").fetchall()
    assert by_duckdb == expected
    ctx = pl.SQLContext(
        rows=pl.scan_delta(store.table_uri(CID, ROWS)), deletes=pl.scan_delta(store.table_uri(CID, DELETES))
    )
    by_polars = ctx.execute(f"SELECT id, _seq FROM ({sql}) AS live ORDER BY id, _seq").collect()
    assert list(zip(by_polars["id"].to_list(), by_polars["_seq"].to_list(), strict=True)) == expected


def test_tables_written_with_fixed_size_vectors_stay_readable_by_walvus(store: SegmentStore) -> None:
    """Before vectors were stored variable-size, files held fixed-size lists and binaries: a table
    mixing both kinds of files reads back whole, vectors exact."""
    old = write(Op.INSERT, 0, [1, 2])
    legacy = pa.Table.from_batches([with_system_columns(old, 0, 0, 0, SCHEMA.data_arrow_schema())])
    assert pa.types.is_fixed_size_list(legacy.schema.field("vec").type)
    store.append(CID, ROWS, legacy, shard=0, last_offset=0, metadata={}, partition_by=["_partition"])
    seal(store, 0, [(1, write(Op.UPSERT, 1, [2, 3], 5))])
    table = store.read(CID, ROWS)
    assert table is not None and table.num_rows == 4
    stored = pa.Table.from_batches(
        [conform(b, SCHEMA.stored_arrow_schema()) for b in table.to_batches()]
    ).sort_by("_seq")  # what the searcher does on load
    assert stored.schema.field("vec").type == pa.list_(pa.float32(), DIM)
    vec = arrow_vectors(stored.column("vec"), "FLOAT_VECTOR", DIM)
    half = arrow_vectors(table.sort_by("_seq").column("half"), "FLOAT16_VECTOR", DIM)
    want = rows_of([1, 2], 0) + rows_of([2, 3], 5)
    assert np.array_equal(vec, np.array([r["vec"] for r in want], dtype=np.float32))
    assert np.array_equal(half, np.array([np.frombuffer(r["half"], np.float16) for r in want], np.float32))
    alive = stored_alive(stored, None, "id")
    assert stored.column("id").filter(pa.array(alive)).to_pylist() == [1, 2, 3]
