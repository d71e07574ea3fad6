"""``walvus.log_tail`` against the real broker: a tail reads, reports positions and commits only
when asked; a group member holds what the group assigns it; the streams' gap reader reads a range."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from streams.wal_range import WalRangeReader
from walvus.log import KafkaLog, LogMessage
from walvus.log_tail import BEGINNING, GroupMember, Partition, Tail


def _read(tail: Tail, n: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 30
    while len(out) < n and time.monotonic() < deadline:
        out += [(m.offset(), m.value()) for m in tail.poll(100, 0.5) if m.error() is None]
    return out


@pytest.fixture
def log_topic(kafka_bootstrap: str) -> Iterator[tuple[KafkaLog, str]]:
    kafka = KafkaLog({"bootstrap.servers": kafka_bootstrap})
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic, 2)
    kafka.append([LogMessage(topic, 0, f"r{i}".encode()) for i in range(5)])
    yield kafka, topic
    kafka.delete_topic(topic)
    kafka.close()


def test_a_tail_reads_from_a_start_and_commits_only_when_asked(log_topic: tuple[KafkaLog, str]) -> None:
    kafka, topic = log_topic
    group = f"g-{uuid.uuid4().hex[:8]}"
    tail = Tail(kafka.conf, group=group, read_committed=True)
    try:
        assert tail.watermarks(topic, 0) == (0, 5)
        assert tail.watermarks_if_exists(f"{topic}-missing", 0) is None
        tail.assign({(topic, 0): 2})
        assert _read(tail, 3) == [(2, b"r2"), (3, b"r3"), (4, b"r4")]
        assert tail.positions([(topic, 0)]) == {(topic, 0): 5}
        assert tail.committed(topic, 0) < 0  # reading commits nothing
        tail.commit({(topic, 0): 4})
        assert tail.committed(topic, 0) == 4
        assert tail.offsets_at(topic, [0, 1], 0, timeout=10) == {0: 0, 1: -1}
        tail.assign({(topic, 0): BEGINNING})
        assert [o for o, _ in _read(tail, 5)] == [0, 1, 2, 3, 4]
    finally:
        tail.close()


def test_the_gap_reader_reads_a_range_of_offsets(log_topic: tuple[KafkaLog, str]) -> None:
    kafka, topic = log_topic
    reader = WalRangeReader(kafka.conf)
    assert reader.read(topic, 0, 1, 3) == [(1, b"r1"), (2, b"r2"), (3, b"r3")]
    assert reader.read(topic, 0, 0, 0) == [(0, b"r0")]


def test_a_group_member_holds_every_partition_it_is_alone_to_be_given(
    log_topic: tuple[KafkaLog, str],
) -> None:
    kafka, topic = log_topic
    seen: list[frozenset[Partition]] = []
    member = GroupMember(
        kafka.conf,
        group=f"m-{uuid.uuid4().hex[:8]}",
        client_id="walvus-test",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        cooperative=True,
        on_change=seen.append,
    )
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 60
        while member.assignment() != {(topic, 0), (topic, 1)} and time.monotonic() < deadline:
            member.serve(0.2)
        assert member.assignment() == {(topic, 0), (topic, 1)}
        assert seen[-1] == {(topic, 0), (topic, 1)}
    finally:
        member.close()
