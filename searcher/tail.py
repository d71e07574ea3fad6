"""Threads that keep a searcher current: the WAL tail and the segments-topic tail."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from schemas.exceptions import RecordFormatError
from schemas.segments import (
    CompactionRequested,
    IndexBuilt,
    SegmentsCompacted,
    SegmentSealed,
    decode_announcement,
)
from schemas.wal import WalRecord
from walvus.clock import SYSTEM_CLOCK, Clock
from walvus.exceptions import LogUnavailable
from walvus.log import MAX_MESSAGE_BYTES
from walvus.log_tail import END, IDLE_LONG_POLL_MS, Message, Tail, is_truncated

log = logging.getLogger(__name__)
CAUGHT_UP_MARGIN = 0.5  # seconds: a fetch answer is at most a long poll (0.1 s) plus delivery old


class WalTail:
    """Reads the WAL partitions it is given, in order, and hands each record to ``apply``."""

    def __init__(
        self,
        conf: dict,
        apply: Callable[[str, int, int, WalRecord], None],
        after_poll: Callable[[], None] = lambda: None,
        advance: Callable[[str, int, int], None] = lambda t, p, o: None,
        truncated: Callable[[str], None] = lambda t: None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``clock``: the monotonic time ``caught_up_at`` reports (Bounded reads compare it with
        their own clock's)."""
        self._clock = clock
        self._tail = Tail(
            conf,
            group="walvus-searcher",
            read_committed=True,
            fetch_wait_max_ms=100,  # a long poll: the broker answers as soon as data arrives
            fetch_min_bytes=1,
            fetch_message_max_bytes=MAX_MESSAGE_BYTES,
            # the records to read next were deleted (WAL retention, ``walvus.gc``): never jump
            # over them; ``truncated`` reloads the collection from Delta, which holds them
            auto_offset_reset="error",
        )
        self._apply = apply
        self._truncated = truncated
        self._after_poll = after_poll
        self._advance = advance
        self._assigned: dict[tuple[str, int], int] = {}
        self._caught_up: dict[str, float] = {}
        self._lock = threading.Lock()
        self._changed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-tail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def assign(self, topic: str, starts: dict[int, int]) -> None:
        with self._lock:
            for p, off in starts.items():
                self._assigned[(topic, p)] = off
            self._changed = True

    def unassign(self, topic: str) -> None:
        with self._lock:
            self._assigned = {k: v for k, v in self._assigned.items() if k[0] != topic}
            self._changed = True
            self._caught_up.pop(topic, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._changed:
                    self._tail.assign(self._assigned)
                    self._changed = False
                idle = not self._assigned
            if idle:
                self._stop.wait(0.01)
                continue
            try:
                msgs = self._tail.poll(1000, 0.05)
            except LogUnavailable as exc:
                log.warning("WAL read failed error=%s", exc)
                continue
            for m in msgs:
                if m.error():
                    if is_truncated(m):
                        self._on_truncated(m)
                    continue
                key = (m.topic(), m.partition())
                with self._lock:
                    if key not in self._assigned or self._changed and m.offset() < self._assigned[key]:
                        continue
                    self._assigned[key] = m.offset() + 1
                try:
                    record = WalRecord.decode(m.value())
                except RecordFormatError as exc:
                    log.error(
                        "skipping malformed WAL record topic=%s offset=%s error=%s",
                        m.topic(),
                        m.offset(),
                        exc,
                    )
                    continue
                try:
                    self._apply(m.topic(), m.partition(), m.offset(), record)
                except Exception:
                    log.exception("applying WAL record failed topic=%s offset=%s", m.topic(), m.offset())
            self._report_positions()
            try:
                self._after_poll()
            except Exception:
                log.exception("after-poll step failed")
        self._tail.close()

    def _on_truncated(self, m: Message) -> None:
        topic = m.topic()
        with self._lock:
            if not any(t == topic for t, _ in self._assigned):
                return
        log.warning("WAL records to read were deleted topic=%s error=%s", topic, m.error())
        try:
            self._truncated(topic)
        except Exception:
            log.exception("handling a truncated WAL failed topic=%s", topic)

    def _report_positions(self) -> None:
        """Everything below the consumer's position was delivered or skipped (transaction markers,
        aborted records), so a read barrier on those offsets may pass."""
        with self._lock:
            if self._changed:
                return
            assigned = list(self._assigned)
        checked = self._clock.monotonic()
        try:
            positions = self._tail.positions(assigned)
        except LogUnavailable:
            return
        behind: set[str] = set()
        for (topic, p), offset in positions.items():
            if offset > 0:
                self._advance(topic, p, offset - 1)
            _, high = self._tail.watermarks(topic, p, cached=True)
            if high < 0 or offset < high:  # unknown yet, or records left to read
                behind.add(topic)
        for topic in {t for t, _ in positions} - behind:
            # the cached high watermark comes from the last fetch answer, at most a long poll old
            self._caught_up[topic] = checked - CAUGHT_UP_MARGIN

    def caught_up_at(self, topic: str) -> float | None:
        """When (monotonic, conservatively) the tail last held every record of ``topic``."""
        return self._caught_up.get(topic)


class AnnouncementTail:
    """Follows the segments topic from its end: sealed segments, built indexes, compactions."""

    def __init__(
        self,
        conf: dict,
        topic: str,
        on_sealed: Callable[[SegmentSealed], None],
        on_index: Callable[[IndexBuilt], None],
        on_compaction: Callable[[CompactionRequested | SegmentsCompacted], None] = lambda a: None,
    ) -> None:
        self._tail = Tail(conf, group="walvus-searcher-segments", fetch_wait_max_ms=IDLE_LONG_POLL_MS)
        self._tail.assign({(topic, 0): END})
        self._on_sealed, self._on_index, self._on_compaction = on_sealed, on_index, on_compaction
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="segments-tail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = self._tail.poll(100, 0.1)
            except LogUnavailable as exc:
                log.warning("segments read failed error=%s", exc)
                continue
            for m in msgs:
                if m.error() or m.value() is None:
                    continue
                try:
                    ann = decode_announcement(m.value())
                    if isinstance(ann, SegmentSealed):
                        self._on_sealed(ann)
                    elif isinstance(ann, IndexBuilt):
                        self._on_index(ann)  # a failed build changes nothing the searcher holds
                    elif isinstance(ann, CompactionRequested | SegmentsCompacted):
                        self._on_compaction(ann)
                except Exception:
                    log.exception("handling announcement failed offset=%s", m.offset())
        self._tail.close()
