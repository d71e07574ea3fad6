"""Talking to the two clusters: reachability checks, reading a topic to its end, target topics.

confluent-kafka errors become ``cdc.exceptions`` errors here, at the boundary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from cdc.exceptions import ClusterUnreachable, TopicMismatch
from cdc.spec import Endpoint, TaskSpec
from schemas.catalog import is_collection_key
from walvus.log import MAX_MESSAGE_BYTES
from walvus.log_tail import BEGINNING, Message, Tail
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


def reader(endpoint: Endpoint, *, group: str = "walvus-cdc", fetch_wait_max_ms: int = 20) -> Tail:
    """A tail that only reads committed records and never commits offsets of its own (``group``:
    where a task's WAL hold is committed, on purpose)."""
    return Tail(
        endpoint.client_config(),
        group=group,
        read_committed=True,
        store_offsets=False,
        fetch_message_max_bytes=MAX_MESSAGE_BYTES,
        fetch_wait_max_ms=fetch_wait_max_ms,
    )


def read_to_end(
    endpoint: Endpoint, topic: str, partition: int = 0, start: int = BEGINNING, timeout: float = 60.0
) -> Iterator[Message]:
    """Every committed message of one partition from ``start`` up to its end at call time."""
    tail = reader(endpoint)
    try:
        marks = tail.watermarks_if_exists(topic, partition)
        if marks is None or marks[1] <= max(start, marks[0]):
            return
        end = marks[1]
        tail.assign({(topic, partition): start})
        deadline = time.monotonic() + timeout
        while True:
            for m in tail.poll(1000, 0.2):
                if m.error() is None:
                    yield m
            if tail.positions([(topic, partition)])[(topic, partition)] >= end:
                return
            if time.monotonic() > deadline:
                raise ClusterUnreachable("source", endpoint.bootstrap, f"could not read {topic} to its end")
    finally:
        tail.close()


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
