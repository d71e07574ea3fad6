"""One task's replicator: source catalog + WAL topics -> target, exactly once.

A session (one per start, and again after any error):

1. ``init_transactions`` on the target with the task's ``transactional.id``. This fences any
   older instance of the task and aborts the transaction it may have left open (SIGKILL).
2. Read the task's positions back from the target (``read_committed``): they are those of the
   last committed transaction, so the source is re-read from exactly there.
3. Loop: consume a batch (catalog first, then WAL), produce the routed records and, in the same
   transaction, the new source positions; commit. Any failure aborts and starts a new session.

A WAL topic is followed only after its collection's catalog record has been handled, so the
target always has the collection (and its WAL topic, with the same partition count) before its
data. A WAL record written under a newer schema than the last catalog record handled waits for
that catalog record (add_field before the rows that use it).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from cdc import positions as positions_mod
from cdc.clusters import TargetTopics, read_catalog, reader
from cdc.exceptions import TaskFenced
from cdc.lag import LagProbe, ShardLag
from cdc.routing import SKIP_ORIGIN, Decision, Router
from cdc.settings import CdcSettings
from cdc.spec import Positions, TaskSpec
from walvus.exceptions import LogUnavailable
from walvus.log import MAX_MESSAGE_BYTES
from walvus.log_tail import BEGINNING, Partition, Tail
from walvus.retention import hold_group

log = logging.getLogger(__name__)
_FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
STARTING, RUNNING, STOPPED, FAILED, RETRYING = "starting", "running", "stopped", "failed", "retrying"


@dataclass
class TaskStats:
    """Counters and state of one replicator, read by the task API and the metrics collector."""

    state: str = STARTING
    error: str | None = None
    replicated: int = 0  # records written to the target (committed)
    replicated_bytes: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: {"origin": 0, "filtered": 0})
    transactions: int = 0
    aborted: int = 0
    sessions: int = 0
    lag: list[ShardLag] = field(default_factory=list)
    lag_at: float = 0.0


class _Batch:
    """The open transaction: what it holds, so that counters move only once it commits."""

    def __init__(self) -> None:
        self.open = False
        self.records = 0
        self.bytes = 0
        self.skipped: dict[str, int] = {}


class Replicator:
    def __init__(self, spec: TaskSpec, settings: CdcSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.router = Router(spec)
        self.stats = TaskStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._tracked: Positions = {}  # followed source partitions -> committed (or start) offset
        self._threads: list[threading.Thread] = []

    # lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Replicator:
        name = self.spec.name
        self._threads = [
            threading.Thread(target=self._run, name=f"cdc-{name}", daemon=True),
            threading.Thread(target=self._measure_lag, name=f"cdc-lag-{name}", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish (commit) the open transaction and stop."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    def positions(self) -> Positions:
        with self._lock:
            return {t: dict(p) for t, p in self._tracked.items()}

    def _run(self) -> None:
        while not self._stop.is_set():
            self.stats.sessions += 1
            try:
                _Session(self).run()
            except TaskFenced as exc:
                self.stats.state, self.stats.error = FAILED, exc.message
                log.error("task fenced task=%s error=%s", self.spec.name, exc.message)
                return
            except Exception as exc:  # every failure: a fresh session re-reads positions from the target
                self.stats.state, self.stats.error = RETRYING, f"{type(exc).__name__}: {exc}"
                log.warning(
                    "task session failed task=%s error=%s; restarting", self.spec.name, self.stats.error
                )
                self._stop.wait(self.settings.cdc_retry_seconds)
        if self.stats.state != FAILED:
            self.stats.state = STOPPED

    def _measure_lag(self) -> None:
        probe: LagProbe | None = None
        try:
            while not self._stop.wait(self.settings.cdc_lag_interval_seconds):
                if self.stats.state != RUNNING:  # positions are only known once a session runs
                    continue
                try:
                    probe = probe or LagProbe(self.spec.source)
                    self.stats.lag = probe.measure(self.positions())
                    self.stats.lag_at = time.time()
                except Exception as exc:
                    log.warning("lag measurement failed task=%s error=%s", self.spec.name, exc)
        finally:
            if probe is not None:
                probe.close()


class _Session:
    """One producer, two consumers (catalog, WAL) and the positions they stand at."""

    def __init__(self, rep: Replicator) -> None:
        self.rep = rep
        self.spec = rep.spec
        self.router = rep.router
        self.settings = rep.settings
        self.topics = TargetTopics(self.spec.target)
        self.versions: dict[int, int] = {}  # collection id -> newest schema version handled
        self.followed: set[int] = set()
        self.committed: Positions = {}
        self.batch = _Batch()
        self.catalog_tp: Partition = (self.router.source_catalog, 0)
        self.wal_tps: list[Partition] = []
        self.producer: Producer | None = None
        self.catalog: Tail | None = None
        self.wal: Tail | None = None
        self.hold: Tail | None = None  # commits the WAL hold on the source (see walvus.gc)

    def run(self) -> None:
        spec, rep = self.spec, self.rep
        try:
            self._begin()
            rep.stats.state, rep.stats.error = RUNNING, None
            log.info("task running task=%s id=%s followed=%d", spec.name, spec.task_id, len(self.followed))
            while not rep._stop.is_set():
                self._step()
        except BaseException:
            self._abort()
            raise
        finally:
            self._close()

    def _begin(self) -> None:
        target = self.spec.target
        self.producer = Producer(
            {
                **target.client_config(),
                "transactional.id": self.spec.transactional_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "batch.size": 1_000_000,
                "message.max.bytes": MAX_MESSAGE_BYTES,
                "transaction.timeout.ms": self.settings.cdc_transaction_timeout_ms,
            }
        )
        self._call(self.producer.init_transactions, 60)
        ptopic = positions_mod.positions_topic(target.namespace, self.spec.task_id)
        self.topics.ensure(ptopic, 1, compacted=True)
        self.topics.ensure(self.router.target_catalog, 1, compacted=True)
        self.committed = positions_mod.load(target, self.spec.task_id)
        snapshot = read_catalog(self.spec.source, self.router.source_catalog)
        cat_start = self._start_offset(self.router.source_catalog, 0)
        self.catalog = reader(self.spec.source)
        self.catalog.assign({self.catalog_tp: cat_start})
        self.wal = reader(self.spec.source)
        self.hold = reader(self.spec.source, group=hold_group(self.spec.source.namespace, self.spec.task_id))
        with self.rep._lock:
            self.rep._tracked = {self.router.source_catalog: {0: max(cat_start, 0)}}
        handled = {n: od for n, od in snapshot.items() if cat_start != BEGINNING and od[0] < cat_start}
        for name, (_, d) in handled.items():  # ids first: a renamed collection is followed by id
            self.router.wants(name, int(d["collection_id"]))
        for name, (_, d) in handled.items():
            if self.router.wants(name, int(d["collection_id"])) and d.get("state", "active") == "active":
                cid = int(d["collection_id"])
                self.versions[cid] = int(d.get("schema", {}).get("version", 1))
                self._follow(cid, int(d.get("shards_num", 1)))

    def _start_offset(self, topic: str, partition: int) -> int:
        for source in (self.committed, self.spec.start_positions):
            if partition in source.get(topic, {}):
                return source[topic][partition]
        return BEGINNING

    def _follow(self, cid: int, shards: int) -> None:
        if cid in self.followed:
            return
        self.topics.ensure(self.router.target_wal_topic(cid), shards)
        topic = self.router.source_wal_topic(cid)
        starts = {(topic, p): self._start_offset(topic, p) for p in range(shards)}
        assert self.wal is not None
        self.wal.add(starts)
        self.wal_tps += list(starts)
        self.followed.add(cid)
        self._hold([(topic, p, max(off, 0)) for (_, p), off in starts.items()])
        with self.rep._lock:
            self.rep._tracked[topic] = {p: max(off, 0) for (_, p), off in starts.items()}
        log.info("following collection task=%s collection_id=%d shards=%d", self.spec.name, cid, shards)

    # one transaction -------------------------------------------------------------------------
    def _step(self) -> None:
        assert self.catalog is not None and self.wal is not None
        got = self._drain_catalog(timeout=0)
        # wait for the first record only, then take whatever is already fetched: a batch is what
        # arrived while the previous transaction committed (low latency when quiet, big when busy)
        wait = 0.0 if got else self.settings.cdc_poll_seconds
        wal_msgs = self.wal.poll(max(1, self.settings.cdc_batch_records), wait)
        done: dict[tuple[str, int], int] = {}  # WAL partitions handled so far -> next offset
        for m in wal_msgs:
            if m.error() is not None:
                if m.error().code() != KafkaError._PARTITION_EOF:
                    log.debug("source read error task=%s error=%s", self.spec.name, m.error())
                continue
            decision = self.router.wal(m.topic(), m.partition(), m.value(), m.key())
            cid = self.router.collection_id_of(m.topic())
            if decision.schema_version > self.versions.get(cid, 0):
                self._await_schema(cid, decision.schema_version)
            self._send(decision)
            done[(m.topic(), m.partition())] = m.offset() + 1
            if self.batch.bytes >= self.settings.cdc_batch_bytes:  # a big batch: commit what is done
                self._commit(done)
        self._commit()

    def _drain_catalog(self, timeout: float) -> int:
        assert self.catalog is not None
        msgs = [m for m in self.catalog.poll(100, timeout) if m.error() is None]
        for m in msgs:
            decision = self.router.catalog(m.key(), m.value())
            ev = decision.collection
            if ev is not None:
                self.versions[ev.collection_id] = max(
                    self.versions.get(ev.collection_id, 0), ev.schema_version
                )
                if ev.active:
                    self._follow(ev.collection_id, ev.shards_num)  # creates the target WAL topic first
            self._send(decision)
        return len(msgs)

    def _await_schema(self, cid: int, version: int) -> None:
        """Hand over catalog records until the one introducing ``version`` is in this transaction."""
        deadline = time.monotonic() + 30
        while self.versions.get(cid, 0) < version and time.monotonic() < deadline:
            self._drain_catalog(timeout=0.1)
        if self.versions.get(cid, 0) < version:
            log.warning(
                "schema version not in the catalog task=%s collection_id=%d version=%d",
                self.spec.name,
                cid,
                version,
            )

    def _send(self, d: Decision) -> None:
        if d.out is None:
            reason = d.skipped or "filtered"
            self.batch.skipped[reason] = self.batch.skipped.get(reason, 0) + 1
            if reason == SKIP_ORIGIN:
                log.debug("not sending a record back to its origin task=%s", self.spec.name)
            return
        self._produce(d.out.topic, d.out.partition, d.out.value, d.out.key)
        self.batch.records += 1
        self.batch.bytes += len(d.out.value or b"")

    def _produce(self, topic: str, partition: int, value: bytes | None, key: bytes | None) -> None:
        assert self.producer is not None
        if not self.batch.open:
            self._call(self.producer.begin_transaction)
            self.batch.open = True
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, partition=partition)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _commit(self, wal_done: dict[tuple[str, int], int] | None = None) -> None:
        """Commit the records and the positions they bring the source to, or nothing at all.

        Positions are the consumers' (they step over transaction markers), or, in the middle of a
        consumed batch, ``wal_done``: the next offset of each WAL partition handled so far.
        """
        assert self.catalog is not None and self.wal is not None and self.producer is not None
        now = self.catalog.positions([self.catalog_tp])
        if wal_done is None:
            now.update(self.wal.positions(self.wal_tps) if self.wal_tps else {})
        else:
            now.update(wal_done)
        moved = [
            (topic, p, offset)
            for (topic, p), offset in now.items()
            if offset >= 0 and self.committed.get(topic, {}).get(p) != offset
        ]
        if not moved and not self.batch.open:
            return
        ptopic = positions_mod.positions_topic(self.spec.target.namespace, self.spec.task_id)
        for topic, partition, offset in moved:
            key, value = positions_mod.encode(topic, partition, offset)
            self._produce(ptopic, 0, value, key)
        self._call(self.producer.commit_transaction, 60)
        self._hold([m for m in moved if m[0] != self.router.source_catalog])
        stats = self.rep.stats
        stats.transactions += 1
        stats.replicated += self.batch.records
        stats.replicated_bytes += self.batch.bytes
        for reason, n in self.batch.skipped.items():
            stats.skipped[reason] = stats.skipped.get(reason, 0) + n
        self.batch = _Batch()
        with self.rep._lock:
            for topic, partition, offset in moved:
                self.committed.setdefault(topic, {})[partition] = offset
                self.rep._tracked.setdefault(topic, {})[partition] = offset

    def _hold(self, positions: list[tuple[str, int, int]]) -> None:
        """Tell the source's garbage collector the next WAL offsets this task needs (a consumer
        group of the task's own, committed after the target's transaction; only a hold, never
        read back: positions live in the target). A failed commit keeps the older, lower hold."""
        if not positions or self.hold is None:
            return
        try:
            self.hold.commit({(t, p): o for t, p, o in positions}, asynchronous=True)
        except LogUnavailable as exc:
            log.warning("WAL hold not committed task=%s error=%s", self.spec.name, exc)

    def _abort(self) -> None:
        if self.producer is not None and self.batch.open:
            self.rep.stats.aborted += 1
            try:
                self.producer.abort_transaction(10)
            except KafkaException as exc:
                log.warning("abort failed task=%s error=%s", self.spec.name, exc)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() in _FENCED:
                raise TaskFenced(
                    f"task {self.spec.name} was fenced: another replicator runs it ({err.str()})",
                    task=self.spec.name,
                ) from exc
            raise

    def _close(self) -> None:
        for c in (self.catalog, self.wal, self.hold):
            if c is not None:
                c.close()
        if self.producer is not None:
            self.producer.flush(5)
