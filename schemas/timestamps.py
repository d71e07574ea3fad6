"""Hybrid timestamps, as Milvus uses them: physical milliseconds << 18 | a logical counter."""

from __future__ import annotations

import threading
import time

LOGICAL_BITS = 18
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def compose(physical_ms: int, logical: int = 0) -> int:
    return (int(physical_ms) << LOGICAL_BITS) | (int(logical) & LOGICAL_MASK)


def physical_ms(ts: int) -> int:
    return int(ts) >> LOGICAL_BITS


class HybridClock:
    """Allocates strictly increasing hybrid timestamps from the wall clock."""

    def __init__(self, now_ms: callable = lambda: int(time.time() * 1000)) -> None:  # type: ignore[valid-type]
        self._now_ms = now_ms
        self._last = 0
        self._lock = threading.Lock()

    def now(self, count: int = 1) -> int:
        """Return the first of ``count`` consecutive timestamps."""
        with self._lock:
            ts = max(compose(self._now_ms()), self._last + 1)
            self._last = ts + count - 1
            return ts

    def observe(self, ts: int) -> None:
        """Never hand out a timestamp at or below one seen elsewhere."""
        with self._lock:
            self._last = max(self._last, int(ts))
