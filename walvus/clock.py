"""The clock stages decide by: wall time for ages that outlive a process (TTL expiry, retention of
dropped collections and of the WAL), monotonic time for intervals within one (idle segments, how
stale a searcher's tail is).

Components take a ``clock`` with ``SYSTEM_CLOCK`` as the default; tests pass ``tests.clock.FakeClock``
and move time by hand instead of sleeping. Waits for I/O (deadlines, retry pauses) keep reading
``time`` directly: they decide nothing about the data.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall time, seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never goes back: for intervals."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fake clock moves instead)."""
        ...


class SystemClock:
    """The process's clocks: ``time.time``, ``time.monotonic`` and ``time.sleep``."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


def now_ms(clock: Clock) -> int:
    """Wall time in milliseconds, as hybrid timestamps and Kafka record times carry it."""
    return int(clock.now() * 1000)
