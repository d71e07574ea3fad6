"""The compactor: a thread of the indexer process that compacts collections on request and by policy.

Requests (``CompactionRequested``, from a client's ``compact()``) come from the segments topic,
read with a consumer group whose position is committed only after the compaction is over, so a
request survives a kill -9 of the indexer mid-compaction: the restarted compactor runs it again
(compacting is idempotent: what was committed is simply not due any more). Every
``check_seconds`` each collection is also checked against the policy. Each collection is
compacted alone: one that fails is logged once per distinct error and retried at the next
check, while the others go on. When a compaction is over, ``SegmentsCompacted`` on the segments
topic tells searchers (to swap in the new segments once indexed) and gateways (the state
GetCompactionState answers); the index worker is woken to build the new segments' indexes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import Counter

from indexer.compaction import CompactionPolicy, CompactionResult, compact
from schemas.catalog import CollectionInfo
from schemas.segments import CompactionRequested, SegmentsCompacted, decode_announcement
from schemas.timestamps import HybridClock
from schemas.topics import segments_topic
from walvus.catalog import Catalog
from walvus.clock import SYSTEM_CLOCK, Clock, now_ms
from walvus.exceptions import LogUnavailable
from walvus.log import KafkaLog, LogMessage
from walvus.log_tail import END, Tail
from walvus.once_log import OnceLog
from walvus.storage import DELETES, ROWS, SegmentStore

log = logging.getLogger(__name__)
COMPACTIONS = Counter(
    "walvus_compactions_total", "Compactions that rewrote segments, by collection", ["collection"]
)
COMPACTION_FAILURES = Counter(
    "walvus_compaction_failures_total",
    "Compactions that raised (nothing changed), by collection",
    ["collection"],
)
PURGED_ROWS = Counter(
    "walvus_compaction_purged_rows_total",
    "Dead rows compaction removed from disk, by collection",
    ["collection"],
)


class Compactor:
    def __init__(
        self,
        kafka: KafkaLog,
        catalog: Catalog,
        store: SegmentStore,
        namespace: str,
        policy: CompactionPolicy | None = None,
        check_seconds: float = 60.0,
        on_compacted: Callable[[], None] = lambda: None,
        keep: Callable[[int], bool] = lambda collection_id: False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``keep``: collection id -> a snapshot pins its tables, so the files old versions need
        are not vacuumed (time travel to the pinned version must find them). ``clock``: its wall
        time says which rows a collection's TTL expired, to remove from disk."""
        self.kafka, self.catalog, self.store, self.ns = kafka, catalog, store, namespace
        self.policy = policy or CompactionPolicy()
        self.check_seconds = check_seconds
        self.on_compacted = on_compacted
        self.keep = keep
        self.wall_clock = clock
        self.clock = HybridClock()  # compaction ids
        self.compactions = 0
        self._stop = threading.Event()
        self._failing = OnceLog(log)
        self._quiet: dict[int, tuple[int, int]] = {}  # collection id -> table versions found not due
        self._thread = threading.Thread(target=self._run, name="compactor", daemon=True)

    def start(self) -> Compactor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        topic = segments_topic(self.ns)
        tail = Tail(self.kafka.conf, group=f"{self.ns}-compactor")
        tail.assign({(topic, 0): self._start_offset(tail, topic)})
        next_check = time.monotonic() + self.check_seconds
        while not self._stop.is_set():
            try:
                msgs = tail.poll(100, 0.5)
            except LogUnavailable:
                continue
            for m in msgs:
                if m.error() or m.value() is None or b'"compact"' not in m.value():
                    continue
                try:
                    req = decode_announcement(m.value())
                except Exception:  # not a request this compactor understands
                    continue
                if isinstance(req, CompactionRequested):
                    self.run_request(req)
                try:  # only now: a compactor killed before this runs the request again
                    tail.commit({(topic, 0): m.offset() + 1})
                except LogUnavailable as exc:  # the next commit covers it; a restart redoes it, harmlessly
                    self._failing.error("compactor cannot commit its position", exc)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.check_seconds
                try:
                    self.check_all()
                except Exception as exc:  # the catalog itself failing; collections fail alone inside
                    self._failing.error("compaction policy check failed", exc)
        tail.close()

    def _start_offset(self, tail: Tail, topic: str) -> int:
        """Where requests are read from: the committed position, or on the very first start the
        end, committed at once, so a request that arrives later survives any restart."""
        while not self._stop.is_set():
            try:
                committed = tail.committed(topic, 0, timeout=10)
                if committed >= 0:
                    return committed
                _, high = tail.watermarks(topic, 0, timeout=10)
                tail.commit({(topic, 0): high})
                return high
            except LogUnavailable as exc:
                self._failing.error("compactor cannot read its position", exc)
                time.sleep(1.0)
        return END

    def run_request(self, req: CompactionRequested) -> SegmentsCompacted:
        info = next((i for i in self.catalog.collections() if i.collection_id == req.collection_id), None)
        if info is None or not info.active:
            ann = SegmentsCompacted(
                req.collection_id,
                req.collection,
                req.compaction_id,
                [],
                [],
                {},
                -1,
                error="collection dropped",
            )
            self._announce(ann)
            return ann
        return self.compact(info, req.compaction_id, force=True, target_bytes=req.target_size_mb << 20)

    def check_all(self) -> int:
        """Compact every collection the policy says is due; returns how many were rewritten."""
        done = 0
        for info in self.catalog.collections():
            if self._stop.is_set():
                break
            if not info.active:
                continue
            versions = self._versions(info)
            if not info.ttl_seconds and self._quiet.get(info.collection_id) == versions:
                continue  # nothing written since the last check found nothing to do
            ann = self.compact(info, self.clock.now(), force=False, announce_idle=False)
            done += bool(ann.removed)
            if not ann.removed and not ann.error:
                self._quiet[info.collection_id] = versions
        return done

    def _versions(self, info: CollectionInfo) -> tuple[int, int]:
        try:
            tables = [self.store.open(info.collection_id, kind) for kind in (ROWS, DELETES)]
        except Exception:
            return (-2, -2)  # unknown: check
        return tuple(-1 if t is None else t.version for t in tables)  # type: ignore[return-value]

    def compact(
        self,
        info: CollectionInfo,
        compaction_id: int,
        *,
        force: bool,
        announce_idle: bool = True,
        target_bytes: int = 0,
    ) -> SegmentsCompacted:
        """Compact one collection, alone: a failure is logged and announced, never raised."""
        try:
            result = compact(
                self.store,
                info,
                compaction_id,
                self.policy,
                force=force,
                target_bytes=target_bytes,
                vacuum=not self.keep(info.collection_id),
                now_ms=now_ms(self.wall_clock),
            )
        except Exception as exc:
            COMPACTION_FAILURES.labels(info.name).inc()
            self._failing.error("compaction failed", exc, collection=info.name, compaction_id=compaction_id)
            ann = SegmentsCompacted(
                info.collection_id,
                info.name,
                compaction_id,
                [],
                [],
                {},
                -1,
                error=f"{type(exc).__name__}: {exc}",
            )
            if announce_idle:
                self._announce(ann)
            return ann
        self._failing.clear()
        ann = _announcement(info, compaction_id, result)
        if result.removed:
            self.compactions += 1
            COMPACTIONS.labels(info.name).inc()
            PURGED_ROWS.labels(info.name).inc(result.purged_rows)
            self.on_compacted()
        if result.removed or announce_idle:
            self._announce(ann)
        return ann

    def _announce(self, ann: SegmentsCompacted) -> None:
        try:
            self.kafka.append([LogMessage(segments_topic(self.ns), 0, ann.to_json())])
        except Exception:  # searchers pick the new segments up at their next load
            log.exception(
                "cannot announce compaction collection=%s compaction_id=%s", ann.collection, ann.compaction_id
            )


def _announcement(info: CollectionInfo, compaction_id: int, r: CompactionResult) -> SegmentsCompacted:
    return SegmentsCompacted(
        collection_id=info.collection_id,
        collection=info.name,
        compaction_id=compaction_id,
        removed=r.removed,
        added=r.added,
        upto=r.upto,
        table_version=r.table_version,
        plans=r.plans,
        purged_rows=r.purged_rows,
        purged_tombstones=r.purged_tombstones,
    )
