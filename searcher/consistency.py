"""Read barriers: the snapshot a search or query reads satisfies its consistency level.

Consistency is a barrier on WAL positions: Strong waits until the tail has applied the positions
the broker reported when the request arrived; Session waits for the writes this process made;
Bounded does too, and when the tail last held the whole log longer ago than the bound
(``WALVUS_BOUNDED_STALENESS_SECONDS``) it waits as Strong does; Eventually never waits. An
iterator's later pages read at the timestamp its first page returned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from schemas.topics import wal_topic
from searcher.collection import LoadedCollection
from searcher.list_offsets import DirectEndPositions
from searcher.positions import EndPositions
from walvus.clock import SYSTEM_CLOCK, Clock
from walvus.log import KafkaLog
from walvus.searcher import Consistency, ConsistencyLevel
from walvus.settings import SearcherSettings

T = TypeVar("T")
Snapshot = list[tuple[Any, np.ndarray]]
BARRIER_TIMEOUT = 30.0


class ReadBarrier:
    """Where the log ends, what this process wrote, and how long to wait for the tail."""

    def __init__(
        self,
        kafka: KafkaLog,
        namespace: str,
        settings: SearcherSettings,
        wal_tail: Any,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``clock``: a Bounded read is within its staleness bound when its monotonic time is
        close enough to the tail's ``caught_up_at`` (``WalTail`` reads the same clock)."""
        self.ns = namespace
        self.clock = clock
        self.settings = settings
        self.wal_tail = wal_tail
        self.ends: EndPositions | DirectEndPositions = EndPositions(kafka.end_offsets)
        if str(kafka.conf.get("security.protocol", "plaintext")).lower() == "plaintext":
            self.ends = DirectEndPositions(kafka.leaders, self.ends)  # one loopback round trip, no hand-offs
        self._local_writes: dict[int, dict[int, int]] = {}
        self._lock = threading.Lock()
        self.session_is_local = True  # False when a client's writes may have gone through another process

    def note_write(self, collection_id: int, positions: dict[int, int]) -> None:
        with self._lock:
            known = self._local_writes.setdefault(collection_id, {})
            for s, off in positions.items():
                known[s] = max(known.get(s, -1), off)

    def read(self, coll: LoadedCollection, consistency: Consistency, run: Callable[[Snapshot], T]) -> T:
        """``run`` over a snapshot that satisfies the request's consistency level.

        Strong asks the broker where the WAL ends and, when this searcher already holds every
        position it last saw, searches while the answer travels: if the snapshot turns out to
        cover those ends the result stands, otherwise it waits for the tail and runs again.
        """
        level = consistency.level
        if level == ConsistencyLevel.SESSION and not self.session_is_local:
            level = ConsistencyLevel.STRONG
        pinned = pinned_ts(consistency)
        if level != ConsistencyLevel.STRONG or pinned is not None:
            self._barrier(coll, level, consistency.wait_for)
            return run(coll.snapshot(pinned))
        topic = wal_topic(self.ns, coll.info.collection_id)
        pending = self.ends.request(topic, coll.info.shards_num)
        if _covers(coll.applied(), self.ends.last_known(topic)):
            snapshot, applied = coll.snapshot_applied()
            result = run(snapshot)
            if _covers(applied, pending.result()):
                return result
        self._wait(coll, {s: end - 1 for s, end in enumerate(pending.result())})
        return run(coll.snapshot())

    def _barrier(
        self, coll: LoadedCollection, level: ConsistencyLevel, wait_for: tuple[tuple[int, int], ...] = ()
    ) -> None:
        cid = coll.info.collection_id
        if level == ConsistencyLevel.EVENTUALLY:
            return
        topic = wal_topic(self.ns, cid)
        if level == ConsistencyLevel.BOUNDED and not self._within_bound(topic):
            level = ConsistencyLevel.STRONG  # behind the log by more than the bound: catch up first
        if level == ConsistencyLevel.STRONG:
            ends = self.ends.after_now(topic, coll.info.shards_num)
            target = {s: end - 1 for s, end in enumerate(ends)}
        else:
            with self._lock:
                target = dict(self._local_writes.get(cid, {}))
            for s, off in wait_for:  # the writes of the gateway that sent the read
                target[s] = max(target.get(s, -1), off)
        self._wait(coll, target)

    def _within_bound(self, topic: str) -> bool:
        """The tail held every record of ``topic`` within the Bounded staleness bound."""
        held = self.wal_tail.caught_up_at(topic)
        return held is not None and self.clock.monotonic() - held <= self.settings.bounded_staleness_seconds

    @staticmethod
    def _wait(coll: LoadedCollection, target: dict[int, int]) -> None:
        if target and not coll.wait_applied(target, BARRIER_TIMEOUT):
            raise TimeoutError(
                f"searcher did not catch up with the log of {coll.info.name} in {BARRIER_TIMEOUT}s"
            )


def _covers(applied: dict[int, int], ends: list[int] | None) -> bool:
    """True when every shard held (``applied``'s keys: a searcher may hold some of them) has
    applied everything below ``ends`` (end offsets per shard)."""
    return ends is not None and all(off >= ends[s] - 1 for s, off in applied.items() if s < len(ends))


def pinned_ts(consistency: Consistency) -> int | None:
    """An iterator's later pages read at the snapshot its first page returned."""
    return consistency.guarantee_ts if consistency.snapshot and consistency.guarantee_ts > 2 else None
