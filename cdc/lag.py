"""Replication lag per shard: in records (source end - replicated position) and in seconds
(now - timestamp of the oldest record not yet replicated; 0 when there is none)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from cdc.clusters import reader
from cdc.spec import Endpoint, Positions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardLag:
    topic: str
    partition: int
    position: int  # next source offset to replicate (what the target has committed)
    end: int  # the source's high watermark
    records: int
    seconds: float | None  # None: the oldest unreplicated record could not be read just now

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class LagProbe:
    """Reads end offsets, and the timestamp of the first unreplicated record, from the source."""

    def __init__(self, source: Endpoint) -> None:
        self._tail = reader(source, fetch_wait_max_ms=5)
        self._heads: dict[tuple[str, int], tuple[int, float]] = {}  # (topic, p) -> (position, ts seconds)

    def measure(self, positions: Positions, now: float | None = None) -> list[ShardLag]:
        out: list[ShardLag] = []
        for topic, parts in sorted(positions.items()):
            for p, pos in sorted(parts.items()):
                marks = self._tail.watermarks_if_exists(topic, p, timeout=5)
                if marks is None:
                    continue
                lo, hi = marks
                pos = max(pos, lo)
                records = max(0, hi - pos)
                seconds: float | None = 0.0
                if records:
                    ts = self._head_ts(topic, p, pos)
                    t_now = time.time() if now is None else now
                    seconds = None if ts is None else max(0.0, t_now - ts)
                out.append(ShardLag(topic, p, pos, hi, records, seconds))
        return out

    def _head_ts(self, topic: str, p: int, pos: int) -> float | None:
        cached = self._heads.get((topic, p))
        if cached is not None and cached[0] == pos:
            return cached[1]
        self._tail.assign({(topic, p): pos})
        try:
            for m in self._tail.poll(1, 1.0):
                if m.error() is None:
                    ts = m.timestamp()[1] / 1000.0
                    self._heads[(topic, p)] = (pos, ts)
                    return ts
        finally:
            self._tail.unassign()
        return None

    def close(self) -> None:
        self._tail.close()


def summary(shards: list[ShardLag]) -> dict[str, object]:
    """Totals of a task: records behind and the age of the oldest unreplicated record."""
    secs = [s.seconds for s in shards if s.seconds is not None]
    return {
        "records": sum(s.records for s in shards),
        "seconds": max(secs, default=0.0),
        "caught_up": all(s.records == 0 for s in shards),
    }
