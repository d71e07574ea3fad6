"""Direct ListOffsets against the real broker: the same last stable offsets librdkafka reports,
open transactions included (a Strong read must not wait for records nobody can read yet)."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer

from schemas.wal import Op, WalHeader, WalRecord
from searcher.list_offsets import DirectEndPositions
from searcher.positions import EndPositions
from searcher.tail import WalTail
from walvus.log import KafkaLog, LogMessage

pytestmark = pytest.mark.integration


def test_direct_lookups_match_librdkafka_through_writes_and_transactions(kafka_bootstrap):
    kafka = KafkaLog({"bootstrap.servers": kafka_bootstrap})
    topic = f"positions-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic, 3)
    kafka.end_offsets(topic, 3)  # waits out leader election (librdkafka retries)
    _settle(kafka, topic)
    direct = DirectEndPositions(kafka.leaders, EndPositions(_not_asked))
    try:
        assert direct.after_now(topic, 3) == kafka.end_offsets(topic, 3) == [0, 0, 0]
        kafka.append([LogMessage(topic, p, b"x") for p in (0, 2, 2)])
        assert direct.after_now(topic, 3) == kafka.end_offsets(topic, 3) == [1, 0, 2]

        tx = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-{topic}"})
        tx.init_transactions(30)
        tx.begin_transaction()
        tx.produce(topic, value=b"pending", partition=1)
        tx.flush(30)
        assert direct.after_now(topic, 3) == kafka.end_offsets(topic, 3) == [1, 0, 2]  # not yet stable
        tx.commit_transaction(30)
        del tx
        deadline = time.monotonic() + 10  # commit markers reach the partitions just after the commit
        while (after := direct.after_now(topic, 3))[1] != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert after == kafka.end_offsets(topic, 3) == [1, 2, 2]  # the record and its commit marker
        assert direct.last_known(topic) == after

        # a partition the topic does not have: the direct path gives way to librdkafka
        with pytest.raises(LookupError, match="librdkafka"):
            direct.after_now(topic, 4)
        assert direct.fallbacks == 1
    finally:
        kafka.close()


def _not_asked(topic: str, partitions: int) -> list[int]:
    raise LookupError("asked librdkafka")


def _settle(kafka: KafkaLog, topic: str) -> None:
    """Wait until the new topic's leaders answer ListOffsets themselves (right after creation a
    broker may still say NOT_LEADER_OR_FOLLOWER; the reader then falls back for a while)."""
    deadline = time.monotonic() + 30
    while True:
        probe = DirectEndPositions(kafka.leaders, EndPositions(lambda t, n: [-1] * n))
        if probe.after_now(topic, 3) != [-1] * 3 or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def test_wal_tail_knows_when_it_held_the_whole_log(kafka_bootstrap):
    """What Bounded reads rely on: the tail marks a topic caught up only once it has read every
    record the broker holds, and not before it has heard of the partition's end at all."""
    kafka = KafkaLog({"bootstrap.servers": kafka_bootstrap})
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic, 2)
    kafka.end_offsets(topic, 2)
    header = WalHeader(op=Op.FLUSH, collection="c", collection_id=1, schema_version=1, ts=1)
    kafka.append([LogMessage(topic, p, WalRecord(header).encode()) for p in (0, 1, 1) for _ in range(50)])
    applied: list[int] = []
    tail = WalTail(kafka.conf, lambda t, p, off, rec: applied.append(off))
    assert tail.caught_up_at(topic) is None
    tail.start()
    try:
        tail.assign(topic, {0: 0, 1: 0})
        deadline = time.monotonic() + 30
        while tail.caught_up_at(topic) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        held = tail.caught_up_at(topic)
        assert held is not None and len(applied) == 150  # every record was applied first
        assert held <= time.monotonic()
        time.sleep(0.5)
        assert tail.caught_up_at(topic) > held  # an idle tail keeps confirming it is current
        tail.unassign(topic)
        assert tail.caught_up_at(topic) is None
    finally:
        tail.stop()
        kafka.close()
