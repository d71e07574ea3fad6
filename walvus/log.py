"""The Kafka log behind a short interface: create topics, append records, read positions.

confluent-kafka errors become ``LogUnavailable`` here, at the boundary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from walvus.exceptions import LogUnavailable

log = logging.getLogger(__name__)
_NOT_READY = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
}
MAX_MESSAGE_BYTES = 68_157_440


@dataclass(frozen=True)
class LogMessage:
    topic: str
    partition: int
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] | None = None


class KafkaLog:
    """One producer (idempotent, acks=all), one admin client and one position reader."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = dict(conf)
        self._admin = AdminClient(self.conf)
        self._producer = Producer(
            {
                **self.conf,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 1,
                "compression.type": "none",
                "message.max.bytes": MAX_MESSAGE_BYTES,
                "batch.size": 1_000_000,
            }
        )
        self._positions = Consumer({**self.conf, "group.id": "walvus-positions", "enable.auto.commit": False})
        self._positions_lock = threading.Lock()
        self._known_topics: set[str] = set()

    def ensure_topic(
        self, name: str, partitions: int = 1, *, compacted: bool = False, config: dict[str, str] | None = None
    ) -> None:
        if name in self._known_topics:
            return
        cfg = {"cleanup.policy": "compact" if compacted else "delete", "retention.ms": "-1"}
        cfg["max.message.bytes"] = str(MAX_MESSAGE_BYTES)
        cfg.update(config or {})
        for attempt in range(3):
            fut = self._admin.create_topics(
                [NewTopic(name, partitions, 1, config=cfg)], operation_timeout=30
            )[name]
            try:
                fut.result(timeout=60)
                break
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    break
                if attempt == 2 or not exc.args[0].retriable():
                    raise LogUnavailable(f"cannot create topic {name}: {exc}", topic=name) from exc
            except TimeoutError as exc:
                if name in self.topics():
                    break
                if attempt == 2:
                    raise LogUnavailable(f"Kafka did not create topic {name} in time", topic=name) from exc
        self._known_topics.add(name)

    def delete_topic(self, name: str) -> None:
        self._known_topics.discard(name)
        fut = self._admin.delete_topics([name], operation_timeout=30)[name]
        try:
            fut.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise LogUnavailable(f"cannot delete topic {name}: {exc}", topic=name) from exc

    def topics(self) -> set[str]:
        try:
            return set(self._admin.list_topics(timeout=10).topics)
        except KafkaException as exc:
            raise LogUnavailable(f"Kafka did not answer: {exc}") from exc

    def append(self, messages: Sequence[LogMessage], timeout: float = 30.0) -> list[int]:
        """Write messages and wait until each is acknowledged. Returns their offsets, in order."""
        offsets: list[int] = [-1] * len(messages)
        errors: list[str] = []

        def delivered(i: int):
            def cb(err: KafkaError | None, msg: Any) -> None:
                if err is not None:
                    errors.append(str(err))
                else:
                    offsets[i] = msg.offset()

            return cb

        try:
            for i, m in enumerate(messages):
                self._produce(m, delivered(i))
            remaining = self._producer.flush(timeout)
        except KafkaException as exc:
            raise LogUnavailable(f"write to Kafka failed: {exc}") from exc
        if remaining or errors or min(offsets, default=0) < 0:
            raise LogUnavailable(f"write to Kafka failed: {errors[:1] or 'not acknowledged in time'}")
        return offsets

    def _produce(self, m: LogMessage, cb: Any) -> None:
        while True:
            try:
                self._producer.produce(
                    m.topic,
                    value=m.value,
                    key=m.key,
                    partition=m.partition,
                    headers=m.headers,
                    on_delivery=cb,
                )
                return
            except BufferError:
                self._producer.poll(0.05)

    def end_offsets(self, topic: str, partitions: int) -> list[int]:
        """The next offset a read_committed reader can reach in each partition (the last stable offset).

        One ListOffsets request for all partitions (about 0.2 ms on loopback).
        """
        deadline = time.monotonic() + 30
        tps = [TopicPartition(topic, p, OFFSET_END) for p in range(partitions)]
        while True:
            with self._positions_lock:
                try:
                    got = self._positions.offsets_for_times(tps, timeout=10)
                    errors = [tp.error for tp in got if tp.error is not None]
                    if not errors:
                        return [tp.offset for tp in sorted(got, key=lambda tp: tp.partition)]
                    raise KafkaException(errors[0])
                except KafkaException as exc:
                    err = exc.args[0]
                    retriable = err.code() in _NOT_READY or err.retriable()
                    if not retriable or time.monotonic() > deadline:
                        raise LogUnavailable(f"cannot read positions of {topic}: {exc}", topic=topic) from exc
            time.sleep(0.05)  # a new topic has no leader for a moment

    def leaders(self, topic: str) -> dict[int, tuple[str, int]]:
        """(host, port) of the leader of each partition of ``topic`` that has one."""
        meta = self._admin.list_topics(topic, timeout=10)
        parts = meta.topics[topic].partitions if topic in meta.topics else {}
        return {
            p: (meta.brokers[m.leader].host, meta.brokers[m.leader].port)
            for p, m in parts.items()
            if m.leader in meta.brokers
        }

    def close(self) -> None:
        self._producer.flush(10)
        self._positions.close()
