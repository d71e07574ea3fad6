"""Where the WAL ends, for Strong reads, with concurrent requests sharing one broker round trip.

Searchers use ``searcher.list_offsets`` on plaintext connections; this librdkafka path serves
TLS/SASL clusters and is its fallback.

A Strong read must see every write acknowledged before it arrived, so it needs the log's
end positions as of some moment after its arrival. ``request`` asks for a lookup that
starts after the call and returns at once; the answer comes from ``Pending.result``. One
thread does the lookups: requests that arrive while one is in flight share the next one
(group commit), so under load the broker sees one ListOffsets per batch of requests, and
a request can do its search while its lookup travels.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Topic:
    partitions: int = 0
    started: int = 0  # lookups started
    done: int = 0  # lookups finished
    wanted: bool = False  # someone waits for a lookup that has not started yet
    latest: list[int] = field(default_factory=list)
    error: BaseException | None = None
    error_gen: int = 0


class Pending:
    """A requested lookup: ``result()`` blocks until a lookup started after the request is done."""

    def __init__(self, owner: EndPositions, topic: _Topic, need: int) -> None:
        self._owner, self._topic, self._need = owner, topic, need

    def result(self) -> list[int]:
        return self._owner._wait(self._topic, self._need)


class EndPositions:
    def __init__(self, lookup: Callable[[str, int], list[int]]) -> None:
        self._lookup = lookup
        self._cond = threading.Condition()
        self._topics: dict[str, _Topic] = {}
        self._thread: threading.Thread | None = None

    def request(self, topic: str, partitions: int) -> Pending:
        with self._cond:
            t = self._topics.get(topic)
            if t is None:
                t = self._topics[topic] = _Topic()
            t.partitions = max(t.partitions, partitions)
            t.wanted = True
            need = t.started + 1  # any lookup started from now on will do
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wal-end-positions", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return Pending(self, t, need)

    def after_now(self, topic: str, partitions: int) -> list[int]:
        """End offsets read by a lookup that started after this call began (blocking)."""
        return self.request(topic, partitions).result()

    def last_known(self, topic: str) -> list[int] | None:
        """The most recent lookup's answer, if any (a hint, not a barrier)."""
        t = self._topics.get(topic)
        return list(t.latest) if t is not None and t.latest else None

    def _wait(self, t: _Topic, need: int) -> list[int]:
        with self._cond:
            while t.done < need:
                self._cond.wait()
            if t.error is not None and t.error_gen >= need:
                # each waiter raises a copy: raising the stored error itself would pile every
                # waiter's frames (and whatever they hold) onto it for as long as it is kept
                raise copy.copy(t.error) from t.error
            return list(t.latest)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not any(t.wanted for t in self._topics.values()):
                    self._cond.wait()
                batch = []
                for name, t in self._topics.items():
                    if t.wanted:
                        t.wanted = False
                        t.started += 1
                        batch.append((name, t, t.started, t.partitions))
            for name, t, gen, partitions in batch:
                try:
                    result, error = self._lookup(name, partitions), None
                except BaseException as exc:  # handed to the waiters, who raise it
                    result, error = [], exc
                with self._cond:
                    t.done = gen
                    if error is None:
                        t.latest, t.error = result, None
                    else:
                        t.error, t.error_gen = error, gen
                    self._cond.notify_all()
