"""Direct ListOffsets against the real broker: the same last stable offsets librdkafka reports,
open transactions included (a Strong read must not wait for records nobody can read yet)."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer

from searcher.list_offsets import DirectEndPositions
from searcher.positions import EndPositions
from walvus.log import KafkaLog, LogMessage

pytestmark = pytest.mark.integration


def test_direct_lookups_match_librdkafka_through_writes_and_transactions(kafka_bootstrap):
    kafka = KafkaLog({"bootstrap.servers": kafka_bootstrap})
    topic = f"positions-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(topic, 3)
    kafka.end_offsets(topic, 3)  # waits out leader election (librdkafka retries)
    direct = _settled(kafka, topic)
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
        deadline = time.monotonic() + 10  # commit markers reach the partitions just after the commit
        while (after := direct.after_now(topic, 3))[1] != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert after == kafka.end_offsets(topic, 3) == [1, 2, 2]  # the record and its commit marker
        assert direct.fallbacks == 0
        assert direct.last_known(topic) == after

        # a partition the topic does not have: the direct path gives way to librdkafka's answer
        with pytest.raises(Exception, match="positions|partition"):
            direct.after_now(topic, 4)
    finally:
        kafka.close()


def _settled(kafka: KafkaLog, topic: str) -> DirectEndPositions:
    """A direct reader once the new topic's leaders answer (right after creation a broker may
    still say NOT_LEADER_OR_FOLLOWER, and the reader then uses librdkafka for a while)."""
    deadline = time.monotonic() + 30
    while True:
        direct = DirectEndPositions(kafka.leaders, EndPositions(kafka.end_offsets))
        direct.after_now(topic, 3)
        if direct.fallbacks == 0 or time.monotonic() > deadline:
            return direct
        time.sleep(0.2)
