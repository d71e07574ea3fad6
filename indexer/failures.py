"""Failed index builds: each (collection, segment, field, index) fails alone and is retried later.

A build that raises is recorded here with its reason, how many attempts failed and when the
next one is due (exponential backoff: ``Backoff.first`` seconds, doubling up to ``Backoff.most``).
The reconcile pass skips an item until it is due, and keeps building everything else. Each
distinct reason of an item is reported once (``IndexFailures.record`` says whether it is new), so
a segment that keeps failing the same way does not flood the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from prometheus_client import Counter

BUILD_FAILURES = Counter(
    "walvus_indexer_build_failures_total",
    "Index builds (or segment listings) that raised, by collection",
    ["collection"],
)


@dataclass(frozen=True)
class Backoff:
    """Retry delays: ``first`` seconds after the first failure, doubling, at most ``most``."""

    first: float = 5.0
    most: float = 300.0

    def __post_init__(self) -> None:
        if self.first <= 0 or self.most < self.first:
            raise ValueError(f"backoff needs 0 < first <= most, got first={self.first} most={self.most}")

    def delay(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` consecutive failures (attempts >= 1)."""
        return min(self.most, self.first * 2.0 ** min(max(attempts - 1, 0), 64))


@dataclass(frozen=True)
class IndexFailure:
    reason: str
    attempts: int
    next_retry: float  # on the book's clock
    next_retry_ts: float  # unix seconds, for people and other processes
    new_reason: bool  # the first time this item failed with this reason


def describe(exc: BaseException) -> str:
    """One line naming the error: ``ArrowInvalid: Failed casting ...``."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class IndexFailures:
    """In-memory book of failing items, keyed by any hashable (the worker uses a tuple)."""

    def __init__(self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff or Backoff()
        self.clock = clock
        self._items: dict[Hashable, IndexFailure] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> IndexFailure | None:
        return self._items.get(key)

    def due(self, key: Hashable) -> bool:
        """True when the item never failed, or its backoff has passed."""
        failure = self._items.get(key)
        return failure is None or self.clock() >= failure.next_retry

    def record(self, key: Hashable, exc: BaseException, collection: str) -> IndexFailure:
        reason = describe(exc)
        previous = self._items.get(key)
        attempts = 1 if previous is None else previous.attempts + 1
        delay = self.backoff.delay(attempts)
        failure = IndexFailure(
            reason=reason,
            attempts=attempts,
            next_retry=self.clock() + delay,
            next_retry_ts=time.time() + delay,
            new_reason=previous is None or previous.reason != reason,
        )
        self._items[key] = failure
        BUILD_FAILURES.labels(collection).inc()
        return failure

    def clear(self, key: Hashable) -> bool:
        """Forget an item (it built). True when it had failed before."""
        return self._items.pop(key, None) is not None
