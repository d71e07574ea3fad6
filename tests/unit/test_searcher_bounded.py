"""Bounded consistency: a read is served at once while the searcher's tail held the whole log within
the staleness bound, by the searcher's clock; past it, the read waits for the log's end as Strong does."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from schemas.catalog import CollectionInfo
from schemas.collection import CollectionSchema, FieldSchema
from schemas.topics import wal_topic
from schemas.types import DataType
from searcher.consistency import ReadBarrier
from tests.clock import FakeClock
from walvus.searcher import Consistency, ConsistencyLevel
from walvus.settings import SearcherSettings

NS = "ns"
INFO = CollectionInfo("c", 5, CollectionSchema(fields=(FieldSchema("id", DataType.INT64, is_primary=True),)))
TOPIC = wal_topic(NS, INFO.collection_id)
BOUNDED = Consistency(ConsistencyLevel.BOUNDED, 2)


class Tail:
    def __init__(self) -> None:
        self.held: dict[str, float] = {}

    def caught_up_at(self, topic: str) -> float | None:
        return self.held.get(topic)


class Collection:
    info = INFO

    def __init__(self) -> None:
        self.waited: list[dict[int, int]] = []

    def wait_applied(self, target: dict[int, int], timeout: float) -> bool:
        self.waited.append(dict(target))
        return True

    def snapshot(self, at_ts: int | None = None) -> list[Any]:
        return []


def _barrier(clock: FakeClock, tail: Tail) -> ReadBarrier:
    ends = {TOPIC: [8]}  # the log ends at offset 8: 7 is its last record
    kafka = SimpleNamespace(conf={"security.protocol": "ssl"}, end_offsets=lambda t, n: ends[t][:n])
    settings = SearcherSettings(bounded_staleness_seconds=5.0)
    return ReadBarrier(kafka, NS, settings, tail, clock)  # type: ignore[arg-type]


def test_a_bounded_read_waits_for_the_log_end_only_once_the_tail_is_staler_than_the_bound() -> None:
    clock, tail, coll = FakeClock(), Tail(), Collection()
    barrier = _barrier(clock, tail)
    tail.held[TOPIC] = clock.monotonic()
    clock.advance(5.0)  # exactly the bound: served from what the tail holds
    assert barrier.read(coll, BOUNDED, lambda snapshot: "read") == "read"  # type: ignore[arg-type]
    assert coll.waited == []
    clock.advance(0.5)
    assert barrier.read(coll, BOUNDED, lambda snapshot: "read") == "read"  # type: ignore[arg-type]
    assert coll.waited == [{0: 7}]


def test_a_tail_that_never_held_the_whole_log_makes_bounded_wait() -> None:
    clock, coll = FakeClock(), Collection()
    _barrier(clock, Tail()).read(coll, BOUNDED, lambda snapshot: None)  # type: ignore[arg-type]
    assert coll.waited == [{0: 7}]
