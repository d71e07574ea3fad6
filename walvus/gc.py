"""Garbage collection: what no one needs any more leaves the disk and the log.

One pass (``GarbageCollector.collect``), run every ``WALVUS_GC_INTERVAL_SECONDS`` by the indexer:

1. **WAL retention.** For each live collection and shard, records older than
   ``WALVUS_GC_WAL_RETENTION_SECONDS`` and below ``min(rows committed, deletes committed) + 1``
   are deleted (Kafka ``DeleteRecords``). That offset is the one a new searcher replays from (it
   loads Delta up to the lower of the two tables' application-transaction versions, then tails
   from the next offset), so nothing a reader needs goes. CDC tasks hold the WAL too: each records the next source offset it needs in a consumer
   group ``<namespace>.cdc.hold.<task id>`` on the source cluster, and the bound never passes
   it. A searcher that still fell behind the new low watermark reloads the collection from Delta.
2. **Dropped indexes and partitions.** Index files (and failure files) of an index id that is no
   longer the field's current index are removed. Rows hidden by a dropped partition's tombstone
   are deleted from the rows table (a new Delta version; their files leave the disk when the
   table is vacuumed, which compaction owns).
3. **Dropped collections.** Once ``WALVUS_GC_DROPPED_RETENTION_SECONDS`` have passed since the
   drop (Delta time travel works until then), the collection's tables and index files are removed,
   then its WAL topic is deleted, once every CDC hold on it has reached the topic's end. A drop is
   a catalog event: every searcher releases the collection when it applies it, the indexer stops
   building for it, and the streams worker drops its records; the retention window is the time
   they have to see it. The topic goes last: while it exists, a dropped collection is found
   again even if its catalog record was replaced by a new collection of the same name, so a pass
   that fails half-way is finished by a later one.

``keep(collection_id)`` says a collection's tables are pinned (a snapshot): they are neither
removed nor touched, and its WAL topic stays as the marker that finds it again, emptied of
records. Each collection is collected on its own: one that fails is logged and retried at the
next pass while the others go on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.dataset as ds

from schemas.catalog import CollectionInfo
from schemas.timestamps import physical_ms
from schemas.topics import wal_prefix, wal_topic
from walvus.catalog import CatalogView
from walvus.clock import SYSTEM_CLOCK, Clock, now_ms
from walvus.index_progress import sealed_segments
from walvus.log import KafkaLog
from walvus.once_log import OnceLog
from walvus.retention import WalRetention, hold_prefix
from walvus.storage import DELETES, ROWS, SegmentStore

log = logging.getLogger(__name__)
# a WAL topic with no catalog record is left alone this long after its creation, whatever the
# retention: a create makes the topic first and publishes the collection's record right after
ORPHAN_GRACE_MS = 60_000
Keep = Callable[[int], bool]


def keep_nothing(collection_id: int) -> bool:
    return False


@dataclass
class GcPass:
    """What one pass did."""

    truncated: dict[str, dict[int, int]] = field(default_factory=dict)  # topic -> shard -> low watermark
    index_files_removed: int = 0
    partition_rows_removed: int = 0  # rows of dropped partitions deleted from the rows tables
    collections_removed: list[int] = field(default_factory=list)  # tables and index files gone
    topics_deleted: list[str] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # collection id -> error


class GarbageCollector:
    def __init__(
        self,
        kafka: KafkaLog,
        retention: WalRetention,
        catalog: CatalogView,
        store: SegmentStore,
        namespace: str,
        *,
        dropped_retention_seconds: float,
        truncate_wal: bool = True,
        wal_retention_seconds: float = 0.0,
        keep: Keep = keep_nothing,
        clock: Clock = SYSTEM_CLOCK,
        orphan_grace_seconds: float = 300.0,
    ) -> None:
        self.kafka, self.retention, self.catalog, self.store, self.ns = (
            kafka,
            retention,
            catalog,
            store,
            namespace,
        )
        self.dropped_retention_ms = int(dropped_retention_seconds * 1000)
        self.truncate_wal = truncate_wal
        self.wal_retention_ms = int(wal_retention_seconds * 1000)
        self.keep = keep
        self.clock = clock  # its wall time ages dropped collections, WAL records and orphan index files
        # an index file of a segment no longer in the table stays this long after it was first seen
        # so: a searcher that loaded the table just before a compaction still finds the index
        self.orphan_grace_ms = int(orphan_grace_seconds * 1000)
        self._orphans: dict[str, int] = {}  # <collection>/<file> -> when first seen without its segment (ms)
        self._failing = OnceLog(log)

    def collect(self) -> GcPass:
        done = GcPass()
        live = self.catalog.collections()
        live_ids = {c.collection_id for c in live}
        for info in live:
            self._isolated(done, info.collection_id, info.name, lambda i=info: self._collect_live(i, done))
        topics = self.kafka.topics()
        for cid, dropped_ms in self._dropped(live_ids, topics).items():
            self._isolated(
                done, cid, str(cid), lambda c=cid, d=dropped_ms: self._collect_dropped(c, d, topics, done)
            )
        return done

    def _isolated(self, done: GcPass, cid: int, name: str, step: Callable[[], None]) -> None:
        try:
            step()
        except Exception as exc:
            done.failed[cid] = f"{type(exc).__name__}: {exc}"
            self._failing.error("garbage collection failed", exc, collection=name, collection_id=cid)

    # live collections ------------------------------------------------------------------------------
    def _collect_live(self, info: CollectionInfo, done: GcPass) -> None:
        if self.truncate_wal:
            low = self.truncate(info)
            if low:
                done.truncated[wal_topic(self.ns, info.collection_id)] = low
        done.index_files_removed += self._remove_dropped_indexes(info)
        if not self.keep(info.collection_id):
            done.partition_rows_removed += self._purge_dropped_partitions(info)
            done.index_files_removed += self._remove_orphan_segment_indexes(info)

    def _purge_dropped_partitions(self, info: CollectionInfo) -> int:
        """Delete the rows a dropped partition hides (its partition tombstone's ``_partition`` and
        ``_shard``, lower ``_seq``): dead for good, also if a partition of that name came back."""
        tombs = self.store.read(
            info.collection_id,
            DELETES,
            filter=ds.field("_pk").is_null(),
            columns=["_partition", "_shard", "_seq"],
        )
        if tombs is None or tombs.num_rows == 0:
            return 0
        marks = tombs.group_by(["_partition", "_shard"]).aggregate([("_seq", "max")]).to_pylist()
        rows = self.store.dataset(info.collection_id, ROWS)
        removed = 0
        for m in marks:
            part, shard, seq = m["_partition"], int(m["_shard"]), int(m["_seq_max"])
            hidden = (
                (ds.field("_partition") == part) & (ds.field("_shard") == shard) & (ds.field("_seq") < seq)
            )
            if rows is None or rows.count_rows(filter=hidden) == 0:
                continue  # purged at an earlier pass
            quoted = part.replace("'", "''")
            removed += self.store.delete_where(
                info.collection_id,
                ROWS,
                f"_partition = '{quoted}' AND _shard = {shard} AND _seq < {seq}",
                {"reason": "dropped partition", "partition": part, "shard": shard},
            )
            log.info(
                "rows of dropped partition deleted collection=%s partition=%s shard=%s",
                info.name,
                part,
                shard,
            )
        return removed

    def truncate(self, info: CollectionInfo) -> dict[int, int]:
        """Delete each shard's WAL records that are in Delta and past every CDC hold; returns the
        low watermarks that moved."""
        topic = wal_topic(self.ns, info.collection_id)
        marks = self.retention.watermarks(topic, info.shards_num)
        safe = self.replay_start(info)
        for held in self._holds(topic, info.shards_num).values():
            for shard, offset in held.items():
                if shard in safe:
                    safe[shard] = min(safe[shard], offset)
        if self.wal_retention_ms > 0:  # records younger than the retention stay (CDC from earliest)
            young = self.retention.offsets_at(
                topic, info.shards_num, now_ms(self.clock) - self.wal_retention_ms
            )
            safe = {s: min(off, young.get(s, off)) for s, off in safe.items()}
        before = {s: off for s, off in safe.items() if s in marks and off > marks[s].low}
        if not before:
            return {}
        low = self.retention.delete_records(topic, before)
        log.info(
            "WAL truncated collection=%s topic=%s low_watermarks=%s",
            info.name,
            topic,
            ",".join(f"{s}:{o}" for s, o in sorted(low.items())),
        )
        return low

    def replay_start(self, info: CollectionInfo) -> dict[int, int]:
        """Per shard, the first WAL offset a searcher loading now would read: the lower of the two
        tables' committed offsets, plus one."""
        cid = info.collection_id
        return {
            s: min(self.store.committed_offset(cid, kind, s) for kind in (ROWS, DELETES)) + 1
            for s in range(info.shards_num)
        }

    def _holds(self, topic: str, partitions: int) -> dict[str, dict[int, int]]:
        """CDC tasks' holds on ``topic``: group -> shard -> next offset the task needs."""
        out = {}
        for group in self.retention.groups(hold_prefix(self.ns)):
            held = self.retention.group_positions(group, topic, partitions)
            if held:
                out[group] = held
        return out

    def _remove_dropped_indexes(self, info: CollectionInfo) -> int:
        indexes = self.store.indexes
        current = {f: idx.index_id for f, idx in info.indexes.items()}
        removed = 0
        for f in indexes.files(info.collection_id):
            if current.get(f.field) != f.index_id:
                indexes.remove(info.collection_id, f.name)
                removed += 1
        if removed:
            log.info("index files of dropped indexes removed collection=%s files=%d", info.name, removed)
        return removed

    def _remove_orphan_segment_indexes(self, info: CollectionInfo) -> int:
        """Index files of segments no longer in the rows table (their rows were deleted).

        The files are listed before the table is read: a segment is committed before its index is
        built, so every listed file's segment is in the version read afterwards unless it went."""
        indexes = self.store.indexes
        files = indexes.files(info.collection_id)
        if not files or self.store.open(info.collection_id, ROWS) is None:
            return 0
        segments = sealed_segments(self.store, info.collection_id)
        removed = 0
        now = now_ms(self.clock)
        for f in files:
            key = f"{info.collection_id}/{f.name}"
            if f.segment_id in segments:
                self._orphans.pop(key, None)
                continue
            seen = self._orphans.setdefault(key, now)
            if now - seen >= self.orphan_grace_ms:
                indexes.remove(info.collection_id, f.name)
                self._orphans.pop(key, None)
                removed += 1
        if removed:
            log.info("index files of removed segments deleted collection=%s files=%d", info.name, removed)
        return removed

    # dropped collections ---------------------------------------------------------------------------
    def _dropped(self, live_ids: set[int], topics: set[str]) -> dict[int, int]:
        """Dropped collections that may still have something stored: id -> when dropped (ms).

        From the catalog's dropped records, and from WAL topics of no live collection (their
        catalog record may have been replaced by a new collection of the same name); a collection
        id is its creation's hybrid timestamp, so such a topic counts as dropped since then.
        """
        out = {
            c.collection_id: physical_ms(c.dropped_ts or c.collection_id)
            for c in self.catalog.collections(include_dropped=True)
            if not c.active and c.collection_id not in live_ids
        }
        prefix = wal_prefix(self.ns)
        for t in topics:
            rest = t[len(prefix) :] if t.startswith(prefix) else ""
            if rest.isdigit() and int(rest) not in live_ids and int(rest) not in out:
                created = physical_ms(int(rest))
                out[int(rest)] = max(created, created + ORPHAN_GRACE_MS - self.dropped_retention_ms)
        return out

    def _collect_dropped(self, cid: int, dropped_ms: int, topics: set[str], done: GcPass) -> None:
        if now_ms(self.clock) - dropped_ms < self.dropped_retention_ms:
            return
        topic = wal_topic(self.ns, cid)
        if self.keep(cid):
            if topic in topics:
                self._empty_topic(cid, topic)
            return
        if self.store.collection_exists(cid):
            self.store.remove_collection(cid)
            done.collections_removed.append(cid)
            log.info(
                "dropped collection removed collection_id=%s tables=%s", cid, self.store.collection_uri(cid)
            )
        if topic in topics and self._replicated(topic):
            self.kafka.delete_topic(topic)
            done.topics_deleted.append(topic)
            log.info("WAL topic of dropped collection deleted collection_id=%s topic=%s", cid, topic)

    def _partitions(self, topic: str) -> int:
        return max(1, len(self.kafka.leaders(topic)))

    def _replicated(self, topic: str) -> bool:
        """Every CDC task that follows ``topic`` has replicated all of it."""
        n = self._partitions(topic)
        holds = self._holds(topic, n)
        if not holds:
            return True
        marks = self.retention.watermarks(topic, n)
        return all(off >= marks[s].high for held in holds.values() for s, off in held.items() if s in marks)

    def _empty_topic(self, cid: int, topic: str) -> None:
        """A pinned dropped collection: its records go (past the CDC holds), the topic stays."""
        n = self._partitions(topic)
        marks = self.retention.watermarks(topic, n)
        safe = {s: m.high for s, m in marks.items()}
        for held in self._holds(topic, n).values():
            for s, off in held.items():
                safe[s] = min(safe.get(s, off), off)
        before = {s: off for s, off in safe.items() if off > marks[s].low}
        if before:
            self.retention.delete_records(topic, before)
            log.info("WAL of pinned dropped collection emptied collection_id=%s topic=%s", cid, topic)


class GcLoop:
    """Runs passes every ``interval`` seconds on a thread of its own (so a slow pass never holds
    up the worker that hosts it) until stopped."""

    def __init__(self, gc: GarbageCollector, interval: float) -> None:
        self.gc, self.interval = gc, interval
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gc", daemon=True)
        self._failing = OnceLog(log)

    def start(self) -> GcLoop:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.gc.collect()
            except Exception as exc:  # the catalog or Kafka itself: every collection failed alike
                self._failing.error("garbage collection pass failed", exc)
            else:
                self._failing.clear()
            self.passes += 1
