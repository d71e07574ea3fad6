"""GarbageCollector's decisions, with real Delta tables and index dirs in tmp_path and an in-memory
Kafka (topics, watermarks, consumer-group holds). The real broker is in tests/integration/test_gc.py."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from schemas.catalog import CollectionInfo, IndexInfo
from schemas.collection import CollectionSchema, FieldSchema, validate_schema
from schemas.stored_rows import deletes_schema
from schemas.timestamps import compose
from schemas.types import DataType as D
from tests.clock import FakeClock
from walvus.catalog import CatalogView
from walvus.exceptions import LogUnavailable
from walvus.gc import GarbageCollector
from walvus.retention import Watermarks, hold_group
from walvus.storage import DELETES, ROWS, SegmentStore

NS = "ns"
NOW_MS = 10_000_000
SCHEMA = validate_schema(
    CollectionSchema(
        fields=(FieldSchema("id", D.INT64, is_primary=True), FieldSchema("v", D.FLOAT_VECTOR, dim=2))
    )
)


def cid_at(ms: int) -> int:
    return compose(ms)


class Catalog(CatalogView):
    def __init__(self, *infos: CollectionInfo) -> None:
        super().__init__()
        for i in infos:
            self._by_name[i.name] = i


class Kafka:
    """Topics and partitions of the fake cluster, and the retention operations on them."""

    def __init__(self) -> None:
        self.marks: dict[str, dict[int, Watermarks]] = {}
        self.holds: dict[str, dict[str, dict[int, int]]] = {}  # group -> topic -> shard -> offset
        self.deleted: list[str] = []
        self.broken: set[str] = set()
        self.written_ms = NOW_MS - 30  # offset o was written at written_ms + o

    def topic(self, cid: int, highs: list[int]) -> str:
        name = f"{NS}.wal.{cid}"
        self.marks[name] = {p: Watermarks(0, h) for p, h in enumerate(highs)}
        return name

    # KafkaLog
    def topics(self) -> set[str]:
        return set(self.marks)

    def delete_topic(self, name: str) -> None:
        self.deleted.append(name)
        self.marks.pop(name)

    def leaders(self, topic: str) -> dict[int, tuple[str, int]]:
        return {p: ("h", 1) for p in self.marks.get(topic, {})}

    # WalRetention
    def watermarks(self, topic: str, partitions: int) -> dict[int, Watermarks]:
        if topic in self.broken:
            raise LogUnavailable(f"cannot read watermarks of {topic}")
        return {p: m for p, m in self.marks[topic].items() if p < partitions}

    def delete_records(self, topic: str, before: dict[int, int]) -> dict[int, int]:
        for p, off in before.items():
            self.marks[topic][p] = Watermarks(off, self.marks[topic][p].high)
        return dict(before)

    def offsets_at(self, topic: str, partitions: int, ts_ms: int) -> dict[int, int]:
        """Offset p of partition 0 was written at ``self.written_ms + p``."""
        return {p: max(0, ts_ms - self.written_ms) for p in range(partitions)}

    def groups(self, prefix: str) -> list[str]:
        return [g for g in self.holds if g.startswith(prefix)]

    def group_positions(self, group: str, topic: str, partitions: int) -> dict[int, int]:
        return dict(self.holds[group].get(topic, {}))


@pytest.fixture
def store(tmp_path: Path) -> SegmentStore:
    return SegmentStore(str(tmp_path / "tables"))


def commit(
    store: SegmentStore, cid: int, kind: str, shard: int, last: int, rows: list[dict] | None = None
) -> None:
    """A commit of ``rows`` (stored-row dicts; none by default) recording ``last`` for the shard."""
    if kind == ROWS:
        table = SCHEMA.to_delta(pa.Table.from_pylist(rows or [], schema=SCHEMA.stored_arrow_schema()))
    else:
        table = pa.Table.from_pylist(rows or [], schema=deletes_schema(pa.int64()))
    store.append(cid, kind, table, shard=shard, last_offset=last, metadata={}, partition_by=None)


def row(key: int, shard: int, seq: int, segment: int = 0, partition: str = "_default") -> dict:
    return {
        "id": key,
        "v": [0.0, 1.0],
        "_partition": partition,
        "_shard": shard,
        "_offset": seq,
        "_seq": seq,
        "_ts": 0,
        "_segment": segment,
    }


def gc(kafka: Kafka, catalog: CatalogView, store: SegmentStore, **kw) -> GarbageCollector:  # type: ignore[no-untyped-def]
    kw.setdefault("dropped_retention_seconds", 3600)
    kw.setdefault("clock", FakeClock(wall=NOW_MS / 1000))
    return GarbageCollector(kafka, kafka, catalog, store, NS, **kw)  # type: ignore[arg-type]


def info(name: str, cid: int, shards: int = 2, **kw) -> CollectionInfo:  # type: ignore[no-untyped-def]
    return CollectionInfo(name, cid, SCHEMA, shards_num=shards, **kw)


def test_wal_truncated_to_what_a_new_searcher_replays_from(store: SegmentStore) -> None:
    kafka = Kafka()
    c = info("c", cid_at(NOW_MS - 1000))
    topic = kafka.topic(c.collection_id, [50, 40])
    commit(store, c.collection_id, ROWS, 0, 30)
    commit(store, c.collection_id, DELETES, 0, 20)  # the lower table decides: replay starts at 21
    commit(store, c.collection_id, ROWS, 1, 39)  # shard 1: no deletes table position -> from 0
    done = gc(kafka, Catalog(c), store).collect()
    assert done.truncated == {topic: {0: 21}} and not done.failed
    assert kafka.marks[topic][0].low == 21 and kafka.marks[topic][1].low == 0
    commit(store, c.collection_id, DELETES, 1, 39)
    assert gc(kafka, Catalog(c), store).collect().truncated == {topic: {1: 40}}


def test_a_cdc_hold_keeps_what_the_task_has_not_replicated(store: SegmentStore) -> None:
    kafka = Kafka()
    c = info("c", cid_at(NOW_MS), shards=1)
    topic = kafka.topic(c.collection_id, [50])
    for kind in (ROWS, DELETES):
        commit(store, c.collection_id, kind, 0, 45)
    kafka.holds[hold_group(NS, "task1")] = {topic: {0: 12}}
    kafka.holds[hold_group(NS, "task2")] = {"other.topic": {0: 0}}  # follows another collection only
    kafka.holds["someone-else"] = {topic: {0: 0}}  # not a CDC hold
    assert gc(kafka, Catalog(c), store).collect().truncated == {topic: {0: 12}}
    kafka.holds[hold_group(NS, "task1")] = {topic: {0: 50}}
    assert gc(kafka, Catalog(c), store).collect().truncated == {topic: {0: 46}}


def test_records_younger_than_the_wal_retention_stay(store: SegmentStore) -> None:
    kafka = Kafka()
    c = info("c", cid_at(NOW_MS), shards=1)
    topic = kafka.topic(c.collection_id, [50])
    for kind in (ROWS, DELETES):
        commit(store, c.collection_id, kind, 0, 45)
    # offsets 0..49 were written 30 ms ago .. 20 ms from now: a 10 ms retention keeps 20 and later
    assert gc(kafka, Catalog(c), store, wal_retention_seconds=0.01).collect().truncated == {topic: {0: 20}}


def test_truncation_can_be_turned_off(store: SegmentStore) -> None:
    kafka = Kafka()
    c = info("c", cid_at(NOW_MS), shards=1)
    topic = kafka.topic(c.collection_id, [50])
    for kind in (ROWS, DELETES):
        commit(store, c.collection_id, kind, 0, 45)
    assert gc(kafka, Catalog(c), store, truncate_wal=False).collect().truncated == {}
    assert kafka.marks[topic][0].low == 0


def test_index_files_of_dropped_indexes_go(store: SegmentStore) -> None:
    kafka = Kafka()
    c = info("c", cid_at(NOW_MS), indexes={"v": IndexInfo("v", "idx", "HNSW", "L2", index_id=9)})
    kafka.topic(c.collection_id, [0, 0])
    commit(store, c.collection_id, ROWS, 0, 5, [row(1, 0, 1, segment=1), row(2, 0, 2, segment=2)])
    d = Path(store.indexes.location(c.collection_id))
    d.mkdir(parents=True)
    keep = ["1_v_9.faiss", "2_v_9.failed.json", "notes.txt"]
    gone = [
        "1_v_8.faiss",
        "2_v_8.failed.json",
        "1_v_8.tmp123",
        "1_other_9.faiss",
        "3_v_9.faiss",
    ]  # 3: no rows
    for name in keep + gone:
        (d / name).write_text("x")
    clock = FakeClock(wall=NOW_MS / 1000)
    collector = gc(kafka, Catalog(c), store, clock=clock)
    done = collector.collect()
    assert done.index_files_removed == len(gone) - 1  # 3's segment left the table: kept a while
    assert sorted(p.name for p in d.iterdir()) == sorted([*keep, "3_v_9.faiss"])
    clock.advance(300)  # the grace a searcher loading at the compaction gets
    assert collector.collect().index_files_removed == 1
    assert sorted(p.name for p in d.iterdir()) == sorted(keep)


def test_dropped_collection_goes_after_its_retention(store: SegmentStore) -> None:
    kafka = Kafka()
    created = NOW_MS - 10 * 3600_000
    c = info("c", cid_at(created), state="dropped", dropped_ts=compose(NOW_MS - 1800_000))
    live = info("live", cid_at(created + 1))
    topic = kafka.topic(c.collection_id, [10, 10])
    kafka.topic(live.collection_id, [0, 0])
    commit(store, c.collection_id, ROWS, 0, 5)
    Path(store.indexes.location(c.collection_id)).mkdir(parents=True)
    commit(store, live.collection_id, ROWS, 0, 5)
    catalog = Catalog(c, live)
    done = gc(kafka, catalog, store).collect()  # dropped 30 min ago, retention 1 h: kept
    assert done.collections_removed == [] and store.collection_exists(c.collection_id)
    done = gc(kafka, catalog, store, dropped_retention_seconds=1200).collect()
    assert done.collections_removed == [c.collection_id] and done.topics_deleted == [topic]
    assert (
        not store.collection_exists(c.collection_id)
        and not Path(store.collection_uri(c.collection_id)).exists()
    )
    assert store.collection_exists(live.collection_id)
    again = gc(kafka, catalog, store, dropped_retention_seconds=0).collect()  # nothing left to do
    assert again.collections_removed == [] and again.topics_deleted == [] and not again.failed


def test_a_dropped_collection_is_kept_until_the_clock_passes_its_retention(store: SegmentStore) -> None:
    kafka = Kafka()
    c = info("c", cid_at(NOW_MS - 1000), state="dropped", dropped_ts=compose(NOW_MS))
    topic = kafka.topic(c.collection_id, [3, 3])
    commit(store, c.collection_id, ROWS, 0, 2)
    clock = FakeClock(wall=NOW_MS / 1000)
    collector = gc(kafka, Catalog(c), store, dropped_retention_seconds=600, clock=clock)
    clock.advance(599.9)
    assert collector.collect().collections_removed == [] and store.collection_exists(c.collection_id)
    clock.advance(0.1)  # exactly the retention
    done = collector.collect()
    assert done.collections_removed == [c.collection_id] and done.topics_deleted == [topic]


def test_a_dropped_collection_replaced_by_one_of_the_same_name_is_found_by_its_topic(
    store: SegmentStore,
) -> None:
    kafka = Kafka()
    old = cid_at(NOW_MS - 3600_000)
    new = info("c", cid_at(NOW_MS - 1000))
    topic = kafka.topic(old, [3])
    kafka.topic(new.collection_id, [0])
    fresh = kafka.topic(cid_at(NOW_MS - 1000) + 7, [0])  # being created: its record is not in yet
    commit(store, old, ROWS, 0, 2)
    done = gc(kafka, Catalog(new), store, dropped_retention_seconds=0).collect()
    assert done.collections_removed == [old] and done.topics_deleted == [topic]
    assert fresh in kafka.topics()


def test_pinned_dropped_collection_keeps_its_tables_and_topic_but_not_its_records(
    store: SegmentStore,
) -> None:
    kafka = Kafka()
    c = info("c", cid_at(NOW_MS - 3600_000), state="dropped", dropped_ts=compose(NOW_MS - 3600_000))
    topic = kafka.topic(c.collection_id, [10, 4])
    commit(store, c.collection_id, ROWS, 0, 5)
    done = gc(kafka, Catalog(c), store, dropped_retention_seconds=0, keep=lambda cid: True).collect()
    assert done.collections_removed == [] and done.topics_deleted == []
    assert store.collection_exists(c.collection_id)
    assert {p: m.low for p, m in kafka.marks[topic].items()} == {0: 10, 1: 4}


def test_a_dropped_topic_waits_for_cdc_to_replicate_it(store: SegmentStore) -> None:
    kafka = Kafka()
    c = info("c", cid_at(NOW_MS - 3600_000), state="dropped", dropped_ts=compose(NOW_MS - 3600_000))
    topic = kafka.topic(c.collection_id, [10])
    kafka.holds[hold_group(NS, "t")] = {topic: {0: 7}}
    done = gc(kafka, Catalog(c), store, dropped_retention_seconds=0).collect()
    assert done.topics_deleted == [] and topic in kafka.topics()
    kafka.holds[hold_group(NS, "t")] = {topic: {0: 10}}
    assert gc(kafka, Catalog(c), store, dropped_retention_seconds=0).collect().topics_deleted == [topic]


def test_one_failing_collection_does_not_stop_the_others(store: SegmentStore) -> None:
    kafka = Kafka()
    bad, good = info("bad", cid_at(NOW_MS), shards=1), info("good", cid_at(NOW_MS) + 1, shards=1)
    kafka.broken.add(kafka.topic(bad.collection_id, [9]))
    topic = kafka.topic(good.collection_id, [9])
    for cid in (bad.collection_id, good.collection_id):
        for kind in (ROWS, DELETES):
            commit(store, cid, kind, 0, 8)
    done = gc(kafka, Catalog(bad, good), store).collect()
    assert done.truncated == {topic: {0: 9}}
    assert list(done.failed) == [bad.collection_id] and "watermarks" in done.failed[bad.collection_id]


def test_rows_of_a_dropped_partition_are_deleted_and_their_segments_index_files_go(
    store: SegmentStore,
) -> None:
    kafka = Kafka()
    c = info("c", cid_at(NOW_MS), shards=1, indexes={"v": IndexInfo("v", "idx", "FLAT", "L2", index_id=9)})
    kafka.topic(c.collection_id, [0])
    # p1 written (segment 5), dropped at seq 10, created again and written (segment 6); p2 untouched
    rows = [row(1, 0, 1, 5, "p1"), row(2, 0, 2, 5, "p1"), row(3, 0, 3, 7, "p2"), row(4, 0, 11, 6, "p1")]
    commit(store, c.collection_id, ROWS, 0, 11, rows)
    commit(
        store,
        c.collection_id,
        DELETES,
        0,
        11,
        [{"_pk": None, "_partition": "p1", "_shard": 0, "_offset": 10, "_seq": 10, "_ts": 0, "_segment": 5}],
    )
    d = Path(store.indexes.location(c.collection_id))
    d.mkdir(parents=True)
    for seg in (5, 6, 7):
        (d / f"{seg}_v_9.faiss").write_text("x")
    done = gc(kafka, Catalog(c), store, orphan_grace_seconds=0).collect()
    assert done.partition_rows_removed == 2 and not done.failed
    left = store.read(c.collection_id, ROWS)
    assert sorted(left.column("id").to_pylist()) == [3, 4]
    assert sorted(p.name for p in d.iterdir()) == ["6_v_9.faiss", "7_v_9.faiss"]
    again = gc(kafka, Catalog(c), store).collect()  # nothing more to do, and no new table version
    version = store.open(c.collection_id, ROWS).version
    assert again.partition_rows_removed == 0 and store.open(c.collection_id, ROWS).version == version
    pinned = gc(kafka, Catalog(c), store, keep=lambda cid: True)
    assert pinned.collect().partition_rows_removed == 0
