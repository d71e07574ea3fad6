"""Snapshots against real Delta tables in tmp_path: the pinned cut, time travel, the live rows
as of the snapshot, and a restore through the write API (in-memory log and catalog)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.catalog import CatalogEvent, CollectionInfo, IndexInfo
from schemas.collection import PARTITION_COLUMN, CollectionSchema, FieldSchema, validate_schema
from schemas.exceptions import CollectionExists
from schemas.snapshots import RestoreJob, RestoreState, SnapshotRecord
from schemas.stored_rows import key_partition_names
from schemas.types import DataType as D
from schemas.validation import build_batch, rows_to_columns
from schemas.wal import Op, WalHeader, WalRecord
from streams.growing import BufferedRecord
from streams.segment_writer import SegmentWriter
from tests.memory import memory_walvus
from walvus.exceptions import SnapshotExists, SnapshotNotFound
from walvus.partitions import assign_partitions
from walvus.restore import RestoreRunner, batch_rows, live_seqs, snapshot_batches, snapshot_rows, within_cut
from walvus.settings import SnapshotSettings
from walvus.snapshots import SnapshotBook, pin_cut, take_snapshot
from walvus.storage import SegmentStore

CID = 11
SCHEMA = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("id", D.INT64, is_primary=True, auto_id=True),
            FieldSchema("vec", D.FLOAT_VECTOR, dim=2),
            FieldSchema("tag", D.VARCHAR, max_length=16),
        ),
        enable_dynamic_field=True,
    )
)
INFO = CollectionInfo(
    "src",
    CID,
    SCHEMA,
    shards_num=2,
    partitions={"_default": 0, "p1": 1},
    indexes={"vec": IndexInfo("vec", "vec_idx", "HNSW", "L2", {"M": 8}, index_id=5)},
    properties={"mmap.enabled": "false"},
)


def _record(op: Op, offset: int, ids: list[int], partition: str | None = None) -> BufferedRecord:
    header = WalHeader(
        op=op, collection="src", collection_id=CID, schema_version=1, ts=1000 + offset, partition=partition
    )
    if op == Op.DELETE:
        batch = pa.record_batch({"id": pa.array(ids, pa.int64())})
    elif op == Op.FLUSH:
        batch = None
    else:
        rows = [{"id": i, "vec": [float(i), float(offset)], "tag": f"o{offset}", "k": i} for i in ids]
        batch = build_batch(SCHEMA, rows_to_columns(SCHEMA, rows), op="upsert")
    return BufferedRecord(offset, WalRecord(header, batch))


class Tables:
    """A collection's Delta tables, written by the real SegmentWriter."""

    def __init__(self, root: Path) -> None:
        self.store = SegmentStore(str(root))
        self.writer = SegmentWriter(self.store, lambda cid: INFO if cid == CID else None)

    def commit(self, shard: int, *records: BufferedRecord) -> None:
        self.writer.commit(CID, shard, list(records), reason="test")


@pytest.fixture
def tables(tmp_path: Path) -> Tables:
    t = Tables(tmp_path / "tables")
    t.commit(0, _record(Op.INSERT, 0, [1, 2, 3]), _record(Op.INSERT, 1, [4], partition="p1"))
    t.commit(0, _record(Op.DELETE, 2, [2]), _record(Op.UPSERT, 3, [3]), _record(Op.FLUSH, 4, []))
    t.commit(1, _record(Op.INSERT, 0, [10, 11]), _record(Op.FLUSH, 1, []))
    return t


def _snapshot(tables: Tables) -> SnapshotRecord:
    rows_v, dels_v, cut = pin_cut(tables.store, CID, 2)
    return SnapshotRecord("s1", "src", CID, INFO, rows_v, dels_v, cut, created_ts=1 << 40, created_ms=1)


def test_records_round_trip_as_json() -> None:
    rec = SnapshotRecord("s1", "src", CID, INFO, 3, 2, {0: 4, 1: 1}, 99, 7, "d", 60)
    again = SnapshotRecord.from_json(rec.to_json())
    assert again == rec and again.info.indexes["vec"].params == {"M": 8}
    assert again.partition_names == ["_default", "p1"]
    job = RestoreJob(5, "s1", "src", "dst", RestoreState.EXECUTING, rows_total=200, rows_done=50)
    assert RestoreJob.from_json(job.to_json()) == job
    assert job.progress == 25 and job.evolve(state=RestoreState.COMPLETED).progress == 100


def test_pin_cut_takes_the_prefix_both_tables_hold(tables: Tables) -> None:
    assert pin_cut(tables.store, CID, 2)[2] == {0: 4, 1: 1}
    # a seal moves both tables' positions (the one with nothing new by an empty commit), so the cut
    # follows; only a crash between the two commits leaves them apart (covered in the streams tests)
    tables.commit(0, _record(Op.INSERT, 5, [7]))
    rows_v, dels_v, cut = pin_cut(tables.store, CID, 2)
    assert cut == {0: 5, 1: 1}
    assert pin_cut(tables.store, CID + 1, 1) == (-1, -1, {0: -1})


def test_snapshot_rows_are_the_live_rows_as_of_the_snapshot(tables: Tables) -> None:
    rec = _snapshot(tables)
    # after the snapshot: a delete, a new row, a new version of a row
    tables.commit(
        0, _record(Op.DELETE, 5, [1]), _record(Op.UPSERT, 6, [4], partition="p1"), _record(Op.FLUSH, 7, [])
    )
    tables.commit(1, _record(Op.INSERT, 2, [12]), _record(Op.FLUSH, 3, []))
    got = snapshot_rows(tables.store, rec).sort_by("id")
    assert got.column("id").to_pylist() == [1, 3, 4, 10, 11]
    assert got.column("tag").to_pylist() == ["o0", "o3", "o1", "o0", "o0"]  # 3 as upserted at offset 3
    assert got.column(PARTITION_COLUMN).to_pylist() == ["_default", "_default", "p1", "_default", "_default"]
    assert got.schema.field("vec").type == pa.list_(pa.float32(), 2)
    assert got.column("$meta").to_pylist()[0] == '{"k":1}'
    # the table now holds more, also within the same versions' offsets: the cut keeps it out
    assert snapshot_rows(tables.store, _snapshot(tables)).num_rows == 5  # 3, 4 (new), 10, 11, 12


def test_snapshot_batches_scan_the_pinned_rows_a_batch_at_a_time(tables: Tables) -> None:
    rec = _snapshot(tables)
    parts = list(snapshot_batches(tables.store, rec, batch=2))
    assert all(p.num_rows >= 2 for p in parts[:-1]) and len(parts) >= 2
    assert pa.concat_tables(parts).sort_by("id").equals(snapshot_rows(tables.store, rec).sort_by("id"))
    assert sum(len(v) for v in live_seqs(tables.store, rec).values()) == 5


def test_within_cut_is_per_shard() -> None:
    t = pa.table({"_shard": pa.array([0, 0, 1, 1], pa.int32()), "_offset": [1, 5, 1, 5], "x": [1, 2, 3, 4]})
    assert within_cut(t, {0: 4, 1: 9}).column("x").to_pylist() == [1, 3, 4]
    assert within_cut(t, {0: 9}).column("x").to_pylist() == [1, 2]  # a shard unknown to the cut: nothing


def test_batches_stay_under_the_request_limit() -> None:
    t = pa.table({"b": pa.array([b"x" * 1000] * 100)})
    assert batch_rows(t, 10_000, 20_000) == 9  # 1,004 bytes a row (offsets included), half of 20,000
    assert batch_rows(t, 5, 10**9) == 5


def test_book_records_snapshots_and_pins() -> None:
    book = SnapshotBook(None, "ns")
    rec = SnapshotRecord("s1", "src", CID, INFO, 3, 2, {0: 4}, 99, 7)
    book.put_snapshot(rec)
    book.put_snapshot(SnapshotRecord("s0", "src", CID, INFO, 1, -1, {0: 1}, 98, 7))
    assert [r.name for r in book.snapshots("src")] == ["s0", "s1"] and book.snapshots("other") == []
    assert book.require("src", "s1") == rec and book.pinned(CID) and not book.pinned(CID + 1)
    assert book.pinned_versions(CID) == {"rows": 1, "deletes": 2}
    with pytest.raises(SnapshotNotFound, match="snapshot not found"):
        book.require("src", "nope")
    book.apply(b"snapshot/src/bad", b"{not json")  # logged, not applied
    book.apply(b"other", b"{}")
    book.remove_snapshot(rec)
    book.remove_snapshot(book.require("src", "s0"))
    assert book.snapshots() == [] and not book.pinned(CID)


def _restore_env(tables: Tables) -> tuple[Any, SnapshotBook]:
    w = memory_walvus()
    w.store = tables.store
    w.snapshots = SnapshotBook(None, "test")
    w.create_collection("src", INFO.schema, shards_num=2)
    return w, w.snapshots


def _wait_final(runner: RestoreRunner, job_id: int) -> RestoreJob:
    for _ in range(500):
        job = runner.state(job_id)
        if job.state in RestoreState.FINAL:
            return job
        time.sleep(0.01)
    raise AssertionError("restore did not finish")


def test_restore_writes_the_snapshot_through_the_write_path(tables: Tables) -> None:
    w, book = _restore_env(tables)
    rec = book.put_snapshot(_snapshot(tables))
    runner = RestoreRunner(w, book, SnapshotSettings(restore_batch_rows=2))
    job = runner.start(rec, "dst")
    done = _wait_final(runner, job.job_id)
    assert done.state == RestoreState.COMPLETED and done.progress == 100 and done.rows_done == 5
    info = w.catalog.require("dst")
    assert info.schema.primary.auto_id and info.shards_num == 2 and set(info.partitions) == {"_default", "p1"}
    assert info.indexes["vec"].params == {"M": 8} and info.properties == {"mmap.enabled": "false"}
    writes = [r for r in w.kafka.records() if r.header.collection == "dst"]
    assert {r.header.op for r in writes} == {Op.UPSERT}
    assert max(r.num_rows for r in writes) <= 2
    by_part: dict[str | None, list[int]] = {}
    for r in writes:
        by_part.setdefault(r.header.partition, []).extend(r.batch.column("id").to_pylist())
    assert sorted(by_part["_default"]) == [1, 3, 10, 11] and by_part["p1"] == [4]  # auto ids kept
    with pytest.raises(CollectionExists):
        runner.start(rec, "dst")
    assert [j.job_id for j in book.jobs("dst")] == [job.job_id]


def test_restore_of_unreadable_tables_fails_with_the_reason(tables: Tables, tmp_path: Path) -> None:
    w, book = _restore_env(tables)
    rec = book.put_snapshot(_snapshot(tables))
    w.store = SegmentStore(str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere" / str(CID) / "rows" / "_delta_log").mkdir(parents=True)
    runner = RestoreRunner(w, book)
    done = _wait_final(runner, runner.start(rec, "dst").job_id)
    assert done.state == RestoreState.FAILED and "StorageError" in done.reason


def test_a_stalled_job_is_reported_failed() -> None:
    w = memory_walvus()
    w.snapshots = book = SnapshotBook(None, "test")
    old = int(time.time() * 1000) - 10_000
    book.put_job(RestoreJob(9, "s", "src", "dst", RestoreState.EXECUTING, start_ms=old, updated_ms=old))
    runner = RestoreRunner(w, book, SnapshotSettings(restore_stall_seconds=5))
    job = runner.state(9)
    assert job.state == RestoreState.FAILED and "no progress" in job.reason


class CommittedTables:
    """Stands in for table snapshots that hold every WAL offset (the memory log's flush returns at once)."""

    version = 3

    def committed_offset(self, shard: int) -> int:
        return 2**40


def test_take_snapshot_refuses_a_name_in_use_and_unknown_collections() -> None:
    w = memory_walvus()
    w.store.open = lambda cid, kind: CommittedTables()  # type: ignore[attr-defined]
    w.snapshots = SnapshotBook(None, "test")
    w.create_collection("src", INFO.schema)
    rec = take_snapshot(w, "src", "s1", description="first")
    assert rec.info.name == "src" and w.snapshots.require("src", "s1").description == "first"
    assert (rec.rows_version, rec.deletes_version, rec.offsets) == (3, 3, {0: 2**40})
    with pytest.raises(SnapshotExists):
        take_snapshot(w, "src", "s1")
    with pytest.raises(Exception, match="collection not found"):
        take_snapshot(w, "nope", "s2")
    assert [r.name for r in w.snapshots.snapshots()] == ["s1"]
    w.publish(w.catalog.require("src").evolve(CatalogEvent.DROP_COLLECTION, state="dropped"))
    assert w.snapshots.require("src", "s1").collection_id == rec.collection_id  # outlives the collection


def test_restore_of_a_partition_key_collection_with_an_added_field(tmp_path: Path) -> None:
    base = validate_schema(
        CollectionSchema(
            fields=(
                FieldSchema("id", D.INT64, is_primary=True),
                FieldSchema("vec", D.FLOAT_VECTOR, dim=2),
                FieldSchema("cat", D.VARCHAR, max_length=8, is_partition_key=True),
            )
        )
    )
    v1 = CollectionInfo("pk", CID, base, partitions=key_partition_names(4), num_partitions=4)
    v2 = v1.evolve(
        CatalogEvent.ADD_FIELD,
        schema=base.with_field(FieldSchema("note", D.VARCHAR, max_length=8, nullable=True)),
    )
    current = [v1]
    store = SegmentStore(str(tmp_path / "tables"))
    writer = SegmentWriter(store, lambda cid: current[0])

    def record(info: CollectionInfo, offset: int, rows: list[dict]) -> BufferedRecord:
        batch = build_batch(info.schema, rows_to_columns(info.schema, rows), op="insert")
        header = WalHeader(
            op=Op.INSERT,
            collection="pk",
            collection_id=CID,
            schema_version=info.schema.version,
            ts=1000 + offset,
        )
        return BufferedRecord(offset, WalRecord(header, assign_partitions(info, batch, None)))

    cats = ["a", "b", "c", "d", "e", "f"]
    writer.commit(CID, 0, [record(v1, 0, [{"id": i, "vec": [i, 0], "cat": c} for i, c in enumerate(cats)])])
    current[0] = v2
    writer.commit(
        CID,
        0,
        [
            record(v2, 1, [{"id": 9, "vec": [9, 0], "cat": "a", "note": "new"}]),
            BufferedRecord(
                2,
                WalRecord(
                    WalHeader(op=Op.FLUSH, collection="pk", collection_id=CID, schema_version=2, ts=1002)
                ),
            ),
        ],
    )
    rows_v, dels_v, cut = pin_cut(store, CID, 1)
    rec = SnapshotRecord("s", "pk", CID, v2, rows_v, dels_v, cut, created_ts=1 << 40, created_ms=1)
    got = snapshot_rows(store, rec).sort_by("id")
    assert got.column("note").to_pylist() == [None] * 6 + ["new"]

    w = memory_walvus()
    w.store = store
    w.snapshots = book = SnapshotBook(None, "test")
    runner = RestoreRunner(w, book)
    done = _wait_final(runner, runner.start(book.put_snapshot(rec), "pk2").job_id)
    assert done.state == RestoreState.COMPLETED and done.rows_done == 7
    target = w.catalog.require("pk2")
    assert target.num_partitions == 4 and target.partitions == v2.partitions and target.schema.field("note")
    (written,) = [r for r in w.kafka.records() if r.header.collection == "pk2"]
    where = dict(
        zip(
            written.batch.column("id").to_pylist(),
            written.batch.column(PARTITION_COLUMN).to_pylist(),
            strict=True,
        )
    )
    assert where == dict(
        zip(got.column("id").to_pylist(), got.column(PARTITION_COLUMN).to_pylist(), strict=True)
    )


def test_rows_of_a_partition_the_snapshot_state_missed_get_it(tables: Tables) -> None:
    # a partition created while the snapshot was taken, after its catalog state was read
    w, book = _restore_env(tables)
    rec = _snapshot(tables)
    rec = book.put_snapshot(
        SnapshotRecord(**{**rec.__dict__, "info": INFO.evolve("x", partitions={"_default": 0})})
    )
    runner = RestoreRunner(w, book)
    done = _wait_final(runner, runner.start(rec, "dst").job_id)
    assert done.state == RestoreState.COMPLETED and set(w.catalog.require("dst").partitions) == {
        "_default",
        "p1",
    }
