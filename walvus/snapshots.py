"""Snapshots: a collection's data pinned at Delta versions, recorded on the snapshots topic.

``take_snapshot`` flushes the collection (everything acknowledged before the call is then
committed to Delta), reads the current versions of its ``rows`` and ``deletes`` tables and,
from those versions, each shard's last committed WAL offset. The snapshot is the WAL prefix
that both tables hold: per shard the smaller of the two offsets, so a delete is never missing
for a row the snapshot holds, whatever else committed between the flush and the read.

``SnapshotBook`` replays and tails the compacted snapshots topic (``<ns>.snapshots``), so
snapshots and restore jobs survive restarts and every gateway process sees the same ones.
The topic is this site's only: a snapshot names this site's Delta versions, which mean nothing
at another site; a restore is ordinary writes, which CDC replicates like any other.
``SnapshotBook.pinned`` is the garbage collector's ``keep`` hook: the tables of a collection,
dropped or not, stay while a snapshot pins them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from schemas.catalog import CollectionInfo
from schemas.collection import check_name
from schemas.exceptions import InvalidArgument
from schemas.snapshots import (
    RESTORE_PREFIX,
    SNAPSHOT_PREFIX,
    RestoreJob,
    RestoreState,
    SnapshotRecord,
    snapshot_key,
)
from schemas.timestamps import physical_ms
from schemas.topics import snapshots_topic
from walvus.exceptions import LogUnavailable, SnapshotExists, SnapshotNotFound, StorageError
from walvus.log import KafkaLog, LogMessage
from walvus.log_tail import BEGINNING, IDLE_LONG_POLL_MS, Tail
from walvus.storage import DELETES, ROWS, SegmentStore

if TYPE_CHECKING:
    from walvus.write_api import WriteApi

log = logging.getLogger(__name__)


class SnapshotBook:
    """Snapshot records and restore jobs by key, as the snapshots topic holds them."""

    def __init__(self, kafka: KafkaLog | None, namespace: str) -> None:
        self._kafka = kafka
        self.topic = snapshots_topic(namespace)
        self._snapshots: dict[str, SnapshotRecord] = {}
        self._jobs: dict[int, RestoreJob] = {}
        self._applied = -1
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SnapshotBook:
        assert self._kafka is not None
        self._kafka.ensure_topic(self.topic, 1, compacted=True, config={"min.cleanable.dirty.ratio": "0.1"})
        tail = Tail(self._kafka.conf, group="walvus-snapshots-reader", fetch_wait_max_ms=IDLE_LONG_POLL_MS)
        tail.assign({(self.topic, 0): BEGINNING})
        end = self._end_offset(tail)
        self._thread = threading.Thread(target=self._tail, args=(tail,), name="snapshots-tail", daemon=True)
        self._thread.start()
        self._wait_applied(end - 1, 30.0)
        return self

    def _end_offset(self, tail: Tail, timeout: float = 30.0) -> int:
        """The topic's end, asked by the tail's own consumer: a topic this process just created may
        stay unknown for a while to a client that looked up metadata before (``KafkaLog.end_offsets``)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, high = tail.watermarks(self.topic, 0, timeout=5)
                return high
            except LogUnavailable as exc:
                if time.monotonic() > deadline:
                    raise LogUnavailable(
                        f"cannot read the end of {self.topic}: {exc}", topic=self.topic
                    ) from exc
                time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    # reading ---------------------------------------------------------------------------------
    def get(self, collection: str, name: str) -> SnapshotRecord | None:
        return self._snapshots.get(snapshot_key(collection, name))

    def require(self, collection: str, name: str) -> SnapshotRecord:
        rec = self.get(collection, name)
        if rec is None:
            raise SnapshotNotFound(collection, name)
        return rec

    def snapshots(self, collection: str | None = None) -> list[SnapshotRecord]:
        """Snapshots, oldest first; of one collection name (also a dropped one) when given."""
        recs = [r for r in self._snapshots.values() if collection is None or r.collection == collection]
        return sorted(recs, key=lambda r: (r.created_ts, r.name))

    def pinned(self, collection_id: int) -> bool:
        """True while a snapshot pins this collection's tables: the garbage collector keeps them."""
        return any(r.collection_id == collection_id for r in list(self._snapshots.values()))

    def pinned_versions(self, collection_id: int) -> dict[str, int]:
        """The oldest Delta version of each table that a snapshot reads (vacuum must keep it)."""
        recs = [r for r in list(self._snapshots.values()) if r.collection_id == collection_id]
        out: dict[str, int] = {}
        for kind, attr in ((ROWS, "rows_version"), (DELETES, "deletes_version")):
            versions = [getattr(r, attr) for r in recs if getattr(r, attr) >= 0]
            if versions:
                out[kind] = min(versions)
        return out

    def job(self, job_id: int) -> RestoreJob | None:
        return self._jobs.get(job_id)

    def jobs(self, target: str | None = None) -> list[RestoreJob]:
        return sorted(
            (j for j in list(self._jobs.values()) if target is None or j.target == target),
            key=lambda j: j.job_id,
        )

    def restoring(self, rec: SnapshotRecord, stall_ms: int) -> list[RestoreJob]:
        """Restore jobs of this snapshot still running (not final, not stalled)."""
        now = int(time.time() * 1000)
        return [
            j
            for j in list(self._jobs.values())
            if j.source == rec.collection
            and j.snapshot == rec.name
            and j.state not in RestoreState.FINAL
            and now - j.updated_ms < stall_ms
        ]

    # writing ---------------------------------------------------------------------------------
    def put_snapshot(self, rec: SnapshotRecord) -> SnapshotRecord:
        self._publish(rec.key, rec.to_json())
        return rec

    def remove_snapshot(self, rec: SnapshotRecord) -> None:
        self._publish(rec.key, None)

    def put_job(self, job: RestoreJob) -> RestoreJob:
        self._publish(job.key, job.to_json())
        return job

    def _publish(self, key: str, value: bytes | None, timeout: float = 30.0) -> None:
        if self._kafka is None:  # an in-memory book (tests): applied at once
            self.apply(key.encode(), value)
            return
        (offset,) = self._kafka.append([LogMessage(self.topic, 0, value, key=key.encode())])
        self._wait_applied(offset, timeout)

    def _wait_applied(self, offset: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._applied < offset:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LogUnavailable(f"snapshots topic did not catch up to offset {offset} in {timeout}s")
                self._cond.wait(left)

    # applying --------------------------------------------------------------------------------
    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic: a snapshot, a restore job, or a tombstone of either."""
        if key is None:
            return
        k = key.decode()
        try:
            if k.startswith(SNAPSHOT_PREFIX):
                if value is None:
                    self._snapshots.pop(k, None)
                else:
                    self._snapshots[k] = SnapshotRecord.from_json(value)
            elif k.startswith(RESTORE_PREFIX):
                job_id = int(k[len(RESTORE_PREFIX) :])
                if value is None:
                    self._jobs.pop(job_id, None)
                else:
                    self._jobs[job_id] = RestoreJob.from_json(value)
            else:
                log.error("unknown record on the snapshots topic key=%s", k)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("bad record on the snapshots topic key=%s error=%s", k, exc)

    def _tail(self, tail: Tail) -> None:
        try:
            while not self._stop.is_set():
                try:
                    msgs = tail.poll(500, 0.1)
                except LogUnavailable as exc:
                    log.warning("snapshots topic read failed error=%s", exc)
                    continue
                for m in msgs:
                    if m.error():
                        continue
                    self.apply(m.key(), m.value())
                with self._cond:
                    pos = tail.positions([(self.topic, 0)])[(self.topic, 0)]
                    self._applied = max(self._applied, pos - 1)
                    self._cond.notify_all()
        finally:
            tail.close()


# taking a snapshot -----------------------------------------------------------------------------
def pin_cut(store: SegmentStore, collection_id: int, shards: int) -> tuple[int, int, dict[int, int]]:
    """(rows version, deletes version, shard -> last WAL offset both versions hold)."""
    versions: list[int] = []
    committed: list[dict[int, int]] = []
    for kind in (ROWS, DELETES):
        dt = store.open(collection_id, kind)
        if dt is None:
            versions.append(-1)
            continue
        versions.append(dt.version)
        offs = {}
        for shard in range(shards):
            v = dt.committed_offset(shard)
            offs[shard] = -1 if v is None else v
        committed.append(offs)
    cut = {s: min(c[s] for c in committed) if committed else -1 for s in range(shards)}
    return versions[0], versions[1], cut


def take_snapshot(
    walvus: WriteApi,
    collection: str,
    name: str,
    *,
    description: str = "",
    compaction_protection_seconds: int = 0,
    flush_timeout: float = 120.0,
) -> SnapshotRecord:
    """Flush ``collection``, pin its tables' versions and record the snapshot; refuses a name in use."""
    book = require_book(walvus)
    check_name("snapshot", name)
    info: CollectionInfo = walvus.catalog.require(collection)
    if compaction_protection_seconds < 0:
        raise InvalidArgument(
            f"compaction_protection_seconds must be >= 0, got {compaction_protection_seconds}"
        )
    if book.get(collection, name) is not None:
        raise SnapshotExists(collection, name)
    flushed = walvus.flush([collection], timeout=flush_timeout)[collection]
    rows_v, dels_v, cut = pin_cut(walvus.store, info.collection_id, info.shards_num)
    short = {s: o for s, o in cut.items() if o < flushed.get(s, -1)}
    if short:  # cannot happen after a flush: the tables would have lost commits
        raise StorageError(
            f"snapshot of {collection}: shards {sorted(short)} are not committed up to the flush",
            collection=collection,
        )
    after = walvus.catalog.require(collection)  # the state after the flush (a concurrent DDL included)
    if after.collection_id != info.collection_id:
        raise InvalidArgument(
            f"collection {collection} was dropped and created again while its snapshot was taken"
        )
    info = after
    ts = walvus.clock.now()
    rec = SnapshotRecord(
        name=name,
        collection=collection,
        collection_id=info.collection_id,
        info=info,
        rows_version=rows_v,
        deletes_version=dels_v,
        offsets=cut,
        created_ts=ts,
        created_ms=physical_ms(ts),
        description=description,
        compaction_protection_seconds=compaction_protection_seconds,
    )
    if book.get(collection, name) is not None:  # taken by a concurrent call while this one flushed
        raise SnapshotExists(collection, name)
    book.put_snapshot(rec)
    log.info(
        "snapshot taken collection=%s snapshot=%s rows_version=%d deletes_version=%d offsets=%s",
        collection,
        name,
        rows_v,
        dels_v,
        cut,
    )
    return rec


def require_book(walvus: WriteApi) -> SnapshotBook:
    book = getattr(walvus, "snapshots", None)
    if book is None:
        raise InvalidArgument("snapshots need a walvus deployment with its snapshots topic")
    return book
