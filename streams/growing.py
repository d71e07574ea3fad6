"""A growing segment: the WAL records of one shard that are not yet committed to Delta."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from schemas.wal import WalRecord
from walvus.clock import SYSTEM_CLOCK, Clock


@dataclass
class BufferedRecord:
    offset: int
    record: WalRecord
    token: Any = None  # what must be acknowledged once the record is durable (a Faust event)


@dataclass
class GrowingBuffer:
    topic: str
    shard: int
    records: list[BufferedRecord] = field(default_factory=list)
    nbytes: int = 0
    rows: int = 0
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)
    last_add: float = field(init=False)  # when the last record arrived (monotonic), or the buffer began
    first_add: float = 0.0  # when the oldest buffered record arrived

    def __post_init__(self) -> None:
        self.last_add = self.clock.monotonic()

    def add(self, offset: int, record: WalRecord, token: Any = None) -> bool:
        """Buffer a record in offset order. A record already buffered (delivered again around a
        rebalance) is not added twice: its token joins the buffered one's. Returns whether added."""
        now = self.clock.monotonic()
        if not self.records:
            self.first_add = now
        entry = BufferedRecord(offset, record, token)
        if offset > self.last_offset:
            self.records.append(entry)
        else:
            at = bisect.bisect_left(self.records, offset, key=lambda r: r.offset)
            if at < len(self.records) and self.records[at].offset == offset:
                held = self.records[at]
                held.token = [held.token, token]
                return False
            self.records.insert(at, entry)
        if record.batch is not None:
            self.nbytes += record.batch.nbytes
            self.rows += record.batch.num_rows
        self.last_add = now
        return True

    @property
    def last_offset(self) -> int:
        return self.records[-1].offset if self.records else -1

    def idle_for(self, now: float) -> float:
        return now - self.last_add

    def age(self, now: float) -> float:
        return now - self.first_add if self.records else 0.0

    def drain(self) -> list[BufferedRecord]:
        out, self.records, self.nbytes, self.rows = self.records, [], 0, 0
        return out
