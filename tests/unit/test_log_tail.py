"""The readers built by ``walvus.log_tail``: each caller's consumer settings, as librdkafka gets
them (kill -9 and restart semantics depend on them). Building a consumer does not reach the
broker, so an unreachable address is enough; the real broker is in the integration tests."""

from __future__ import annotations

import pytest

from cdc.clusters import reader
from cdc.spec import Endpoint
from searcher.ownership import ShardOwnership
from searcher.tail import AnnouncementTail, WalTail
from walvus.exceptions import LogUnavailable
from walvus.log import MAX_MESSAGE_BYTES
from walvus.log_tail import IDLE_LONG_POLL_MS, Tail

CONF = {"bootstrap.servers": "127.0.0.1:1"}


def _without_conf(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in CONF and k != "logger"}


def test_a_tail_never_commits_on_its_own_and_leaves_unset_settings_to_librdkafka() -> None:
    tail = Tail(CONF, group="g")
    try:
        assert _without_conf(tail.settings) == {"group.id": "g", "enable.auto.commit": False}
    finally:
        tail.close()


def test_the_searcher_wal_tail_reads_committed_records_and_never_jumps_over_deleted_ones() -> None:
    wal = WalTail(CONF, apply=lambda *a: None)
    try:
        assert _without_conf(wal._tail.settings) == {
            "group.id": "walvus-searcher",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 100,
            "fetch.min.bytes": 1,
            "fetch.message.max.bytes": MAX_MESSAGE_BYTES,
            "auto.offset.reset": "error",
        }
    finally:
        wal._tail.close()


def test_the_announcement_tail_long_polls_the_segments_topic() -> None:
    ann = AnnouncementTail(CONF, "ns.segments", lambda a: None, lambda a: None)
    try:
        assert _without_conf(ann._tail.settings) == {
            "group.id": "walvus-searcher-segments",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": IDLE_LONG_POLL_MS,
        }
    finally:
        ann._tail.close()


@pytest.mark.parametrize(
    ("kwargs", "group", "wait_ms"),
    [({}, "walvus-cdc", 20), ({"group": "ns.cdc.hold.t1", "fetch_wait_max_ms": 5}, "ns.cdc.hold.t1", 5)],
)
def test_a_cdc_reader_reads_committed_records_and_stores_no_offsets(
    kwargs: dict, group: str, wait_ms: int
) -> None:
    tail = reader(Endpoint("127.0.0.1:1"), **kwargs)
    try:
        assert _without_conf(tail.settings) == {
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "fetch.message.max.bytes": MAX_MESSAGE_BYTES,
            "fetch.wait.max.ms": wait_ms,
        }
    finally:
        tail.close()


def test_the_shard_owner_is_a_cooperative_member_that_reports_its_address() -> None:
    owner = ShardOwnership(CONF, "ns.searchers.0", "h:1", lambda a: None, session_timeout_ms=6000)
    try:
        assert _without_conf(owner._member.settings) == {
            "group.id": "ns.searchers.0",
            "client.id": "walvus-searcher@h:1",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "partition.assignment.strategy": "cooperative-sticky",
            "topic.metadata.refresh.interval.ms": 1000,
        }
    finally:
        owner._member.close()


def test_the_presence_member_joins_an_eager_group_of_its_own() -> None:
    owner = ShardOwnership(
        CONF, "ns.searchers.0", "h:1", lambda a: None, session_timeout_ms=1200, presence_topic="p"
    )
    try:
        assert owner._presence is not None
        assert _without_conf(owner._presence.settings) == {
            "group.id": "ns.searchers.0.presence",
            "client.id": "walvus-searcher@h:1",
            "enable.auto.commit": False,
            "session.timeout.ms": 1200,
            "heartbeat.interval.ms": 500,
        }
    finally:
        owner._member.close()
        owner._presence.close()


def test_kafka_errors_become_log_unavailable() -> None:
    tail = Tail({**CONF, "socket.timeout.ms": 100}, group="g")
    try:
        with pytest.raises(LogUnavailable):
            tail.committed("t", 0, timeout=0.2)
    finally:
        tail.close()
