"""Compaction of real Delta tables in tmp_path, written by the real SegmentWriter: dead rows and
needless tombstones go, small segments merge, live rows and the shards' positions stay."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from indexer.compaction import CompactionPolicy, Merge, SegmentStats, compact, plan
from schemas.catalog import CollectionInfo
from schemas.collection import PARTITION_COLUMN, CollectionSchema, FieldSchema, validate_schema
from schemas.segments import is_compacted
from schemas.timestamps import compose
from schemas.types import DataType as D
from schemas.validation import build_batch, rows_to_columns
from schemas.wal import Op, WalHeader, WalRecord
from streams.growing import BufferedRecord
from streams.live import live_rows
from streams.segment_writer import SegmentWriter
from tests.clock import FakeClock
from walvus.exceptions import CommitConflict
from walvus.storage import DELETES, ROWS, SegmentStore, app_id

CID = 3
SCHEMA = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("id", D.INT64, is_primary=True),
            FieldSchema("vec", D.FLOAT_VECTOR, dim=2),
            FieldSchema("name", D.VARCHAR, max_length=16, nullable=True),
        )
    )
)
NOW_MS = 1_800_000_000_000
FORCE = CompactionPolicy(retention_seconds=0)


class Env:
    def __init__(self, root: Path, shards: int = 2, properties: dict[str, str] | None = None) -> None:
        self.info = CollectionInfo(
            "c",
            CID,
            SCHEMA,
            shards_num=shards,
            partitions={"_default": 0, "p1": 1},
            properties=properties or {},
        )
        self.store = SegmentStore(str(root))
        self.writer = SegmentWriter(self.store, lambda cid: self.info)
        self.next = {s: 0 for s in range(shards)}

    def seal(
        self, shard: int, *records: tuple[Op, list[int], str | None], ts_ms: int = NOW_MS
    ) -> list[BufferedRecord]:
        """Commit one segment of the shard from (op, ids, partition) records."""
        buffered = []
        for op, ids, part in records:
            off = self.next[shard]
            self.next[shard] += 1
            header = WalHeader(
                op=op,
                collection="c",
                collection_id=CID,
                schema_version=1,
                ts=compose(ts_ms + off),
                partition=part,
            )
            if op == Op.DELETE:
                batch = pa.record_batch({"id": pa.array(ids, pa.int64())})
            elif op in (Op.DROP_PARTITION, Op.FLUSH):
                batch = None
            else:
                rows = [{"id": i, "vec": [float(i), float(off)], "name": f"s{shard}o{off}"} for i in ids]
                batch = build_batch(SCHEMA, rows_to_columns(SCHEMA, rows), op=str(op))
            buffered.append(BufferedRecord(off, WalRecord(header, batch)))
        self.writer.commit(CID, shard, buffered)
        return buffered

    def live(self) -> dict[int, tuple]:
        t = live_rows(self.store, self.info)
        return {
            i: (n, tuple(v))
            for i, n, v in zip(
                t.column("id").to_pylist(),
                t.column("name").to_pylist(),
                t.column("vec").to_pylist(),
                strict=True,
            )
        }

    def table(self, kind: str) -> pa.Table:
        t = self.store.read(CID, kind)
        assert t is not None
        return t

    def positions(self) -> dict[tuple[str, int], int | None]:
        out = {}
        for kind in (ROWS, DELETES):
            dt = DeltaTable(self.store.table_uri(CID, kind))
            for s in range(self.info.shards_num):
                out[(kind, s)] = dt.transaction_version(app_id(CID, s))
        return out

    def data_bytes(self) -> int:
        root = Path(self.store.table_uri(CID, ROWS)).parent
        return sum(p.stat().st_size for p in root.rglob("*.parquet"))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path / "tables")


def unique_seqs(t: pa.Table) -> bool:
    pairs = list(zip(t.column("_shard").to_pylist(), t.column("_seq").to_pylist(), strict=True))
    return len(pairs) == len(set(pairs))


def test_compaction_drops_dead_rows_merges_segments_and_keeps_positions(env: Env) -> None:
    env.seal(0, (Op.INSERT, [0, 2, 4, 6], None))
    env.seal(1, (Op.INSERT, [1, 3, 5, 7], None))
    env.seal(0, (Op.UPSERT, [2, 4], None), (Op.DELETE, [6], None))
    env.seal(1, (Op.DELETE, [3], None), (Op.INSERT, [9], None))
    env.seal(0, (Op.UPSERT, [4], None), (Op.FLUSH, [], None))
    env.seal(1, (Op.INSERT, [11], None))  # its seal moves the deletes table's position too (an empty commit)
    before, positions = env.live(), env.positions()
    size_before = env.data_bytes()
    assert env.table(ROWS).num_rows == 13

    result = compact(env.store, env.info, 42, FORCE, force=True, now_ms=NOW_MS)

    rows = env.table(ROWS)
    assert env.live() == before
    assert rows.num_rows == len(before) == 8  # one stored row per live key: nothing dead is left
    assert unique_seqs(rows)
    assert env.positions() == positions  # the streams worker's exactly-once offsets survive
    segments = pc.unique(rows.column("_segment")).to_pylist()
    assert all(is_compacted(s) for s in segments)  # every seal is covered by both tables' positions
    assert sorted(result.removed) == sorted(set(result.removed)) and len(result.removed) == 6
    assert sum(a[2] for a in result.added) == 8 and {a[1] for a in result.added} == {0, 1}
    assert result.upto == {"0": 3, "1": 3} and result.purged_rows == 5
    assert env.table(DELETES).num_rows == 0 and result.purged_tombstones == 2  # nothing left to hide
    assert env.data_bytes() < size_before  # vacuumed (retention 0)
    history = DeltaTable(env.store.table_uri(CID, ROWS)).history(3)
    assert any(h.get("compaction_id") == "42" for h in history)

    # the same compaction again (a compactor killed before it announced): the committed outcome
    same = compact(env.store, env.info, 42, FORCE, force=True, now_ms=NOW_MS)
    assert (same.removed, same.added, same.upto) == (result.removed, result.added, result.upto)
    # compacting again has nothing to do; the table stays as it is
    again = compact(env.store, env.info, 43, FORCE, force=True, now_ms=NOW_MS)
    assert again.removed == [] and env.live() == before


def test_a_segment_whose_rows_are_all_dead_goes_with_its_tombstones(env: Env) -> None:
    big = CompactionPolicy(small_segment_rows=1, retention_seconds=0)  # nothing counts as small
    env.seal(0, (Op.INSERT, [0, 2], None))
    env.seal(0, (Op.INSERT, [4], None))
    env.seal(0, (Op.DELETE, [4], None))
    before = env.live()
    result = compact(env.store, env.info, 1, big, force=True, now_ms=NOW_MS)
    assert env.live() == before == {0: ("s0o0", (0.0, 0.0)), 2: ("s0o0", (2.0, 0.0))}
    assert len(result.removed) == 1 and result.added == [] and env.table(ROWS).num_rows == 2
    assert env.table(DELETES).num_rows == 0


def test_a_tombstone_stays_while_it_hides_a_row_compaction_did_not_rewrite(env: Env) -> None:
    policy = CompactionPolicy(dead_fraction=0.99, small_segments=2, retention_seconds=0)
    env.seal(0, (Op.INSERT, [0], None))
    env.seal(0, (Op.INSERT, [2], None))
    env.seal(0, (Op.INSERT, [4], "p1"))  # alone in its partition: not merged
    env.seal(0, (Op.DELETE, [4], "p1"), (Op.FLUSH, [], None))
    before = env.live()
    result = compact(env.store, env.info, 1, policy, force=False, now_ms=NOW_MS)
    assert len(result.removed) == 2 and len(result.added) == 1  # the two small _default segments
    assert env.live() == before and sorted(before) == [0, 2]
    assert env.table(DELETES).column("_pk").to_pylist() == [4]  # still hides the stored row 4


def test_ttl_expired_rows_and_dropped_partitions_leave_the_disk(tmp_path: Path) -> None:
    env = Env(tmp_path / "tables", shards=1, properties={"collection.ttl.seconds": "60"})
    env.seal(0, (Op.INSERT, [1, 2], None), ts_ms=NOW_MS - 3_600_000)  # expired an hour ago
    env.seal(0, (Op.INSERT, [3, 4], "p1"), (Op.INSERT, [5], None))
    env.seal(0, (Op.DROP_PARTITION, [], "p1"))
    assert env.table(DELETES).num_rows == 1  # the partition tombstone
    compact(env.store, env.info, 7, FORCE, force=True, now_ms=NOW_MS)
    rows = env.table(ROWS)
    assert rows.column("id").to_pylist() == [5]
    assert rows.column(PARTITION_COLUMN).to_pylist() == ["_default"]
    assert env.table(DELETES).num_rows == 0  # no row of p1 left to hide


def test_policy_waits_for_enough_small_segments_or_dead_rows() -> None:
    policy = CompactionPolicy(dead_fraction=0.5, small_segment_rows=10, small_segments=3)
    small = [SegmentStats(i, 0, "_default", 5, 0, i) for i in range(2)]
    assert plan(small, policy, force=False) == []
    assert plan(small, policy, force=True) == [Merge(0, "_default", (0, 1))]
    three = [*small, SegmentStats(2, 0, "_default", 5, 0, 2), SegmentStats(3, 1, "_default", 5, 0, 3)]
    assert plan(three, policy, force=False) == [Merge(0, "_default", (0, 1, 2))]
    mostly_dead = [SegmentStats(9, 0, "_default", 100, 60, 9), SegmentStats(8, 1, "_default", 20, 0, 8)]
    assert plan(mostly_dead, policy, force=False) == [Merge(0, "_default", (9,))]
    assert plan([SegmentStats(9, 0, "_default", 100, 10, 9)], policy, force=False) == []
    assert (
        plan([SegmentStats(9, 0, "_default", 5, 0, 9)], policy, force=True) == []
    )  # one small segment alone


def test_appends_committed_during_a_rewrite_stay_and_a_second_rewrite_conflicts(env: Env) -> None:
    env.seal(0, (Op.INSERT, [0, 2], None))
    env.seal(0, (Op.UPSERT, [2], None))
    snapshot = env.store.open(CID, ROWS)
    rival = env.store.open(CID, ROWS)  # another compactor that read the same version
    assert snapshot is not None and rival is not None
    env.seal(0, (Op.INSERT, [4], None))  # the streams worker commits meanwhile
    old = snapshot.dataset().to_table()
    segs = pc.unique(old.column("_segment")).to_pylist()
    kept = old.filter(pc.field("id") == 0)
    env.store.replace_segments(CID, ROWS, snapshot, kept, segs, metadata={"walvus_operation": "test"})
    assert sorted(env.table(ROWS).column("id").to_pylist()) == [0, 4]
    with pytest.raises(CommitConflict):  # a rewrite from the same snapshot (another compactor) loses
        env.store.replace_segments(
            CID, ROWS, rival, old.slice(0, 0), segs, metadata={"walvus_operation": "test"}
        )
    assert sorted(env.table(ROWS).column("id").to_pylist()) == [0, 4]


def test_merged_segments_stay_under_the_row_limit(tmp_path: Path) -> None:
    env = Env(tmp_path / "tables", shards=1)
    for b in range(4):
        env.seal(0, (Op.INSERT, [b * 2, b * 2 + 1], None))
    before = env.live()
    result = compact(
        env.store, env.info, 5, CompactionPolicy(max_segment_rows=4, retention_seconds=0), force=True
    )
    assert [a[2] for a in result.added] == [4, 4] and len({a[0] for a in result.added}) == 2
    assert env.live() == before
    counts = env.table(ROWS).group_by("_segment").aggregate([("id", "count")])
    assert sorted(counts.column("id_count").to_pylist()) == [4, 4]


def test_a_target_size_bounds_the_stored_bytes_of_each_new_segment(tmp_path: Path) -> None:
    env = Env(tmp_path / "tables", shards=1)
    for b in range(6):
        env.seal(0, (Op.INSERT, list(range(b * 50, (b + 1) * 50)), None))
    dt = env.store.open(CID, ROWS)
    assert dt is not None
    adds = dt.files()
    per_row = pc.sum(adds.column("size_bytes")).as_py() / pc.sum(adds.column("num_records")).as_py()
    result = compact(env.store, env.info, 9, FORCE, force=True, target_bytes=int(per_row * 120))
    assert [a[2] for a in result.added] == [100, 100, 100]  # whole source segments, <= 120 rows each


def test_one_failing_collection_does_not_stop_the_others(tmp_path: Path) -> None:
    from indexer.compactor import COMPACTION_FAILURES, Compactor
    from schemas.segments import decode_announcement
    from tests.memory import MemoryLog

    good = Env(tmp_path / "tables", shards=1)
    for b in range(3):
        good.seal(0, (Op.INSERT, [b], None))
    broken = CollectionInfo("broken", CID + 1, SCHEMA)
    log_dir = Path(good.store.table_uri(CID + 1, ROWS)) / "_delta_log"
    log_dir.mkdir(parents=True)
    (log_dir / "00000000000000000000.json").write_text("not a delta log\n")

    class Catalog:
        def collections(self) -> list[CollectionInfo]:
            return [broken, good.info]

    kafka = MemoryLog()
    compactor = Compactor(
        kafka,
        Catalog(),
        good.store,
        "ns",
        CompactionPolicy(small_segments=3, retention_seconds=0),  # type: ignore[arg-type]
    )
    failures = COMPACTION_FAILURES.labels("broken")._value.get()
    assert compactor.check_all() == 1
    assert COMPACTION_FAILURES.labels("broken")._value.get() == failures + 1
    assert good.table(ROWS).num_rows == 3 and all(
        is_compacted(s) for s in good.table(ROWS).column("_segment").to_pylist()
    )
    (done,) = [decode_announcement(m.value) for m in kafka.messages]
    assert done.collection == "c" and len(done.removed) == 3 and not done.error
    # asked for explicitly, the broken one answers with its error (the client's state: Completed, failed)
    failed = compactor.compact(broken, 77, force=True)
    assert failed.error and failed.compaction_id == 77


def test_the_compactor_removes_rows_once_its_clock_passes_their_ttl(tmp_path: Path) -> None:
    from indexer.compactor import Compactor
    from tests.memory import MemoryLog

    env = Env(tmp_path / "tables", shards=1, properties={"collection.ttl.seconds": "60"})
    env.seal(0, (Op.INSERT, [1], None), ts_ms=NOW_MS - 20_000)
    env.seal(0, (Op.INSERT, [2], None))
    clock = FakeClock(wall=NOW_MS / 1000)
    compactor = Compactor(MemoryLog(), None, env.store, "ns", FORCE, clock=clock)  # type: ignore[arg-type]
    clock.advance(30)  # the rows are 50 s and 30 s old
    assert not compactor.compact(env.info, 1, force=True).error
    assert sorted(env.table(ROWS).column("id").to_pylist()) == [1, 2]
    clock.advance(15)  # 65 s and 45 s
    assert not compactor.compact(env.info, 2, force=True).error
    assert env.table(ROWS).column("id").to_pylist() == [2]
