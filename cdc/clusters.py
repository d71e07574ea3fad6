"""Talking to the two clusters: reachability checks, reading a topic to its end, target topics.

confluent-kafka errors become ``cdc.exceptions`` errors here, at the boundary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from cdc.exceptions import ClusterUnreachable, TopicMismatch
from cdc.spec import Endpoint, TaskSpec
from schemas.catalog import is_collection_key
from walvus.log import MAX_MESSAGE_BYTES, drain
from walvus.retention import WalRetention, hold_group

log = logging.getLogger(__name__)
CATALOG_TOPIC_CONFIG = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}


def check_reachable(role: str, endpoint: Endpoint, timeout: float) -> ClusterMetadata:
    """List the cluster's topics within ``timeout`` seconds, or raise ``ClusterUnreachable``."""
    admin = AdminClient(endpoint.client_config())
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ClusterUnreachable(role, endpoint.bootstrap, exc.args[0].str()) from exc
    if not meta.brokers:
        raise ClusterUnreachable(role, endpoint.bootstrap, "no brokers in the metadata")
    return meta


def reader(endpoint: Endpoint, **extra: Any) -> Consumer:
    """A consumer that only reads committed records and never commits offsets of its own."""
    return Consumer(
        {
            **endpoint.client_config(),
            "group.id": "walvus-cdc",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "fetch.message.max.bytes": MAX_MESSAGE_BYTES,
            "fetch.wait.max.ms": 20,
            **extra,
        }
    )


def watermarks(consumer: Consumer, tp: TopicPartition, timeout: float = 10.0) -> tuple[int, int] | None:
    """(low, high) of a partition, or None when the topic does not exist (yet, or any more)."""
    try:
        return consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
    except KafkaException as exc:
        if exc.args[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION):
            return None
        raise


def read_to_end(
    endpoint: Endpoint, topic: str, partition: int = 0, start: int = OFFSET_BEGINNING, timeout: float = 60.0
) -> Iterator[Any]:
    """Every committed message of one partition from ``start`` up to its end at call time."""
    consumer = reader(endpoint)
    try:
        tp = TopicPartition(topic, partition)
        marks = watermarks(consumer, tp)
        if marks is None or marks[1] <= max(start, marks[0]):
            return
        end = marks[1]
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout
        while True:
            for m in drain(consumer, 1000, 0.2):
                if m.error() is None:
                    yield m
            pos = consumer.position([tp])[0].offset
            if pos >= end:
                return
            if time.monotonic() > deadline:
                raise ClusterUnreachable("source", endpoint.bootstrap, f"could not read {topic} to its end")
    finally:
        consumer.close()


def read_catalog(endpoint: Endpoint, topic: str, timeout: float = 60.0) -> dict[str, tuple[int, dict]]:
    """The current collection states of a catalog topic: collection name -> (offset, record as a
    dict). Alias and database records are left out; a renamed collection's old name has
    ``state = "renamed"``; a collection outside the ``default`` database is keyed ``db/name``."""
    out: dict[str, tuple[int, dict]] = {}
    for m in read_to_end(endpoint, topic, timeout=timeout):
        if m.key() is None or not is_collection_key(m.key().decode()):
            continue
        name = m.key().decode()
        if m.value() is None:
            out.pop(name, None)
            continue
        try:
            out[name] = (m.offset(), json.loads(m.value()))
        except ValueError:
            log.error("bad catalog record topic=%s offset=%d", topic, m.offset())
    return out


def drop_topic(endpoint: Endpoint, topic: str, timeout: float = 10.0) -> None:
    """Delete a topic, best effort: a failure is logged, not raised."""
    try:
        AdminClient(endpoint.client_config()).delete_topics([topic], operation_timeout=timeout)[topic].result(
            timeout=timeout
        )
        log.info("topic deleted topic=%s", topic)
    except Exception as exc:
        log.warning("could not delete topic topic=%s error=%s", topic, exc)


class TargetTopics:
    """Creates the target's topics with the configs walvus itself uses, and checks partition counts."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._admin = AdminClient(endpoint.client_config())
        self._known: dict[str, int] = {}

    def ensure(self, name: str, partitions: int, *, compacted: bool = False) -> None:
        if self._known.get(name) == partitions:
            return
        cfg = {"cleanup.policy": "delete", "retention.ms": "-1", "max.message.bytes": str(MAX_MESSAGE_BYTES)}
        if compacted:
            cfg.update(CATALOG_TOPIC_CONFIG)
        fut = self._admin.create_topics([NewTopic(name, partitions, 1, config=cfg)], operation_timeout=30)[
            name
        ]
        try:
            fut.result(timeout=60)
            log.info("target topic created topic=%s partitions=%d", name, partitions)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        have = self.partitions(name)
        if have != partitions:
            raise TopicMismatch(
                f"target topic {name} has {have} partitions, the source has {partitions}", topic=name
            )
        self._known[name] = partitions

    def partitions(self, name: str) -> int:
        deadline = time.monotonic() + 30
        while True:
            meta = self._admin.list_topics(topic=name, timeout=10).topics.get(name)
            if meta is not None and meta.error is None and meta.partitions:
                return len(meta.partitions)
            if time.monotonic() > deadline:
                return 0
            time.sleep(0.05)


def release_hold(task: TaskSpec) -> None:
    """Delete a deleted task's WAL hold on the source, so the source's WAL can be truncated past it."""
    retention = WalRetention(task.source.client_config())
    try:
        retention.delete_group(hold_group(task.source.namespace, task.task_id))
    except Exception as exc:  # the source may be gone; its GC then never needed the hold
        log.warning("could not release the WAL hold task=%s error=%s", task.name, exc)
    finally:
        retention.close()
