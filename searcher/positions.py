"""Where the WAL ends, for Strong reads, with concurrent requests sharing one broker round trip.

A Strong read must see every write acknowledged before it arrived, so it needs the log's
end positions as of some moment after its arrival. Requests that arrive while a lookup is
in flight wait for it to finish and then share the next one (group commit): under load the
broker sees one ListOffsets per batch of requests instead of one per request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Topic:
    started: int = 0  # lookups started
    done: int = 0  # lookups finished
    inflight: bool = False
    latest: list[int] = field(default_factory=list)
    error: BaseException | None = None


class EndPositions:
    def __init__(self, lookup: Callable[[str, int], list[int]]) -> None:
        self._lookup = lookup
        self._cond = threading.Condition()
        self._topics: dict[str, _Topic] = {}

    def after_now(self, topic: str, partitions: int) -> list[int]:
        """End offsets read by a lookup that started after this call began."""
        with self._cond:
            t = self._topics.setdefault(topic, _Topic())
            need = t.started + 1  # any lookup started from now on will do
            while t.done < need:
                if not t.inflight:
                    t.started += 1
                    t.inflight = True
                    gen = t.started
                    break
                self._cond.wait()
            else:
                if t.error is not None:
                    raise t.error
                return list(t.latest)
        try:
            result, error = self._lookup(topic, partitions), None
        except BaseException as exc:  # shared with the waiters, then raised here too
            result, error = [], exc
        with self._cond:
            t.done, t.inflight, t.latest, t.error = gen, False, result, error
            self._cond.notify_all()
        if error is not None:
            raise error
        return result
