"""Growing segments per shard, sealed by policy or flush, committed through the Delta sink.

Framework-free: the Faust agent feeds it records and acknowledges the tokens it returns,
which happens only after the records they stand for are durable in Delta.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from schemas.exceptions import RecordFormatError
from schemas.segments import SegmentSealed
from schemas.wal import Op, WalRecord
from streams.growing import GrowingBuffer
from streams.seal_policy import SealPolicy
from streams.segment_writer import SegmentWriter
from walvus.clock import SYSTEM_CLOCK, Clock
from walvus.storage import DELETES, ROWS

log = logging.getLogger(__name__)
Shard = tuple[str, int]
# (topic, shard, first, last) -> the records at offsets first..last that the log holds, as
# (offset, raw value); offsets of transaction markers or truncated records are simply absent
RangeReader = Callable[[str, int, int, int], list[tuple[int, bytes]]]


def collection_id_of(topic: str) -> int | None:
    try:
        return int(topic.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return None


class Materializer:
    def __init__(
        self,
        writer: SegmentWriter,
        policy: SealPolicy,
        announce: Callable[[SegmentSealed], None] = lambda s: None,
        read_range: RangeReader | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``read_range``: reads offsets the buffer lacks straight from the log before a commit (see
        ``fill_gaps``); without it, gaps are committed past, as before. ``clock``: its monotonic
        time says how long a buffer has been idle and how old it is (the seal policy's reasons)."""
        self.clock = clock
        self.writer = writer
        self.read_range = read_range
        self.policy = policy
        self.announce = announce
        self.buffers: dict[Shard, GrowingBuffer] = {}
        self.sealed = 0

    def add(self, topic: str, partition: int, offset: int, raw: bytes, token: Any = None) -> list[Any]:
        """Buffer one WAL record. Returns tokens that are now safe to acknowledge."""
        try:
            record = WalRecord.decode(raw)
        except RecordFormatError as exc:
            log.error(
                "skipping malformed WAL record topic=%s shard=%s offset=%s error=%s",
                topic,
                partition,
                offset,
                exc,
            )
            return (
                [token]
                if not self._buffer(topic, partition).records
                else self._ack_later(topic, partition, token)
            )
        buf = self._buffer(topic, partition)
        if not buf.add(offset, record, token):
            return []  # delivered again: acknowledged with the copy already buffered
        if record.header.op == Op.FLUSH:
            # the other shards' flush records follow at once: seal the whole collection, in parallel
            siblings = [k for k, b in self.buffers.items() if k[0] == topic and b.records]
            return self.seal_all(siblings)
        if self.policy.full(buf.nbytes, buf.rows):
            return self.seal(topic, partition)
        return []

    def _ack_later(self, topic: str, partition: int, token: Any) -> list[Any]:
        # A malformed record in the middle of a buffer is acknowledged with the buffer.
        buf = self._buffer(topic, partition)
        buf.records[-1].token = [buf.records[-1].token, token]
        return []

    def _buffer(self, topic: str, partition: int) -> GrowingBuffer:
        key = (topic, partition)
        if key not in self.buffers:
            self.buffers[key] = GrowingBuffer(topic, partition, clock=self.clock)
        return self.buffers[key]

    def due(self, now: float | None = None) -> list[Shard]:
        now = self.clock.monotonic() if now is None else now
        return [
            k
            for k, b in self.buffers.items()
            if self.policy.reason(b.nbytes, b.idle_for(now), b.rows, b.age(now))
        ]

    def seal(self, topic: str, partition: int) -> list[Any]:
        buf = self.buffers.get((topic, partition))
        if buf is None or not buf.records:
            return []
        cid = collection_id_of(topic)
        if cid is not None:
            self.fill_gaps(buf, cid)
        records = buf.records
        if cid is not None:
            sealed = self.writer.commit(cid, partition, records, self._reason(buf))  # raises: nothing acked
            if sealed is not None:
                self.sealed += 1
                self.announce(sealed)
        buf.drain()
        return list(_flatten(r.token for r in records))

    def fill_gaps(self, buf: GrowingBuffer, cid: int) -> int:
        """Add the records between the shard's committed offset and the buffer's last one that the
        buffer lacks, read from the log. Faust can hand out a later record of a partition while an
        earlier one was skipped around a rebalance and is only read again after the commit went
        past it, which lost it: a commit covers every offset up to its last. Returns records added."""
        if self.read_range is None or not buf.records:
            return 0
        done = min(
            self.writer.committed(cid, ROWS, buf.shard), self.writer.committed(cid, DELETES, buf.shard)
        )
        have = np.fromiter((r.offset for r in buf.records), dtype=np.int64, count=len(buf.records))
        have = have[have > done]
        if not len(have):
            return 0
        expected = np.arange(done + 1, have[-1] + 1, dtype=np.int64)
        missing = np.setdiff1d(expected, have, assume_unique=True)
        if not len(missing):
            return 0
        runs = np.split(missing, np.flatnonzero(np.diff(missing) > 1) + 1)
        added = 0
        for run in runs:
            for offset, raw in self.read_range(buf.topic, buf.shard, int(run[0]), int(run[-1])):
                try:
                    record = WalRecord.decode(raw)
                except RecordFormatError:
                    continue  # skipped when it was first read, and skipped again
                added += buf.add(offset, record)
        if added:
            log.warning(
                "read %s records the stream had not handed out before committing topic=%s shard=%s gaps=%s",
                added,
                buf.topic,
                buf.shard,
                len(runs),
            )
        return added

    def _reason(self, buf: GrowingBuffer) -> str:
        """Why a buffer is sealed: the policy's reason, a flush, or a hand-over (rebalance, stop)."""
        if any(r.record.header.op == Op.FLUSH for r in buf.records):
            return "flush"
        now = self.clock.monotonic()
        return self.policy.reason(buf.nbytes, buf.idle_for(now), buf.rows, buf.age(now)) or "handover"

    def seal_all(self, shards: Iterable[Shard] | None = None) -> list[Any]:
        """Seal several shards; their Delta commits run in parallel (delta-rs releases the GIL)."""
        todo = [k for k in (shards if shards is not None else list(self.buffers)) if k in self.buffers]
        if len(todo) <= 1:
            return [t for k in todo for t in self.seal(*k)]
        with ThreadPoolExecutor(max_workers=min(4, len(todo))) as pool:
            results = list(pool.map(lambda k: self.seal(*k), todo))
        return [t for r in results for t in r]

    def refresh(self, shards: Iterable[Shard]) -> None:
        """Re-read these shards' committed positions from Delta at their next commit; keep their buffers."""
        for key in shards:
            cid = collection_id_of(key[0])
            if cid is not None:
                self.writer.forget(cid, key[1])

    def drop(self, shards: Iterable[Shard]) -> None:
        for key in shards:
            self.buffers.pop(key, None)
            cid = collection_id_of(key[0])
            if cid is not None:
                self.writer.forget(cid, key[1])


def _flatten(tokens: Iterable[Any]) -> Iterable[Any]:
    for t in tokens:
        if isinstance(t, list):
            yield from _flatten(t)
        elif t is not None:
            yield t
