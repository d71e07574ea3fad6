"""Kafka retention operations behind a short interface: how far back a WAL topic reaches, deleting
records below an offset, and the positions that readers outside walvus (CDC tasks) hold.

A WAL topic is created with ``retention.ms=-1``: Kafka never deletes its records by age. What
bounds it is ``delete_records`` up to the offset the garbage collector computes (``walvus.gc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from walvus.exceptions import LogUnavailable
from walvus.log_tail import Tail

TIMEOUT = 30.0


def hold_group(namespace: str, task_id: str) -> str:
    """The consumer group in which a CDC task reading ``namespace`` records the next source offset
    it needs: the garbage collector never deletes WAL records at or after it."""
    return f"{namespace}.cdc.hold.{task_id}"


def hold_prefix(namespace: str) -> str:
    return f"{namespace}.cdc.hold."


@dataclass(frozen=True)
class Watermarks:
    low: int  # the first offset still stored
    high: int  # the next offset to be written


class WalRetention:
    def __init__(self, conf: dict[str, Any]) -> None:
        self._admin = AdminClient(conf)
        self._reader = Tail(conf, group="walvus-gc")

    def watermarks(self, topic: str, partitions: int) -> dict[int, Watermarks]:
        return {p: Watermarks(*self._reader.watermarks(topic, p, timeout=TIMEOUT)) for p in range(partitions)}

    def offsets_at(self, topic: str, partitions: int, ts_ms: int) -> dict[int, int]:
        """Per partition, the first offset written at or after ``ts_ms`` (the end when none was)."""
        got = self._reader.offsets_at(topic, range(partitions), ts_ms, timeout=TIMEOUT)
        return {p: off if off >= 0 else self.watermarks(topic, partitions)[p].high for p, off in got.items()}

    def delete_records(self, topic: str, before: dict[int, int]) -> dict[int, int]:
        """Delete each partition's records below ``before[p]``. Returns the new low watermarks."""
        if not before:
            return {}
        tps = [TopicPartition(topic, p, int(off)) for p, off in before.items()]
        futures = self._admin.delete_records(tps, request_timeout=TIMEOUT, operation_timeout=TIMEOUT)
        out = {}
        for tp, fut in futures.items():
            try:
                out[tp.partition] = int(fut.result(timeout=TIMEOUT).low_watermark)
            except KafkaException as exc:
                raise LogUnavailable(
                    f"cannot delete records of {topic}[{tp.partition}]: {exc}", topic=topic
                ) from exc
        return out

    def groups(self, prefix: str) -> list[str]:
        try:
            listed = self._admin.list_consumer_groups(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
        except KafkaException as exc:
            raise LogUnavailable(f"cannot list consumer groups: {exc}") from exc
        return sorted(g.group_id for g in listed.valid if g.group_id.startswith(prefix))

    def group_positions(self, group: str, topic: str, partitions: int) -> dict[int, int]:
        """The group's committed offset of each partition of ``topic`` that it has one for."""
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])]
        try:
            got = self._admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT)[group].result(
                timeout=TIMEOUT
            )
        except KafkaException as exc:
            raise LogUnavailable(f"cannot read offsets of group {group}: {exc}") from exc
        return {tp.partition: tp.offset for tp in got.topic_partitions if tp.offset >= 0 and tp.error is None}

    def delete_group(self, group: str) -> None:
        try:
            self._admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result(
                timeout=TIMEOUT
            )
        except KafkaException as exc:
            if exc.args[0].code() not in (KafkaError.GROUP_ID_NOT_FOUND, KafkaError.NOT_COORDINATOR):
                raise LogUnavailable(f"cannot delete consumer group {group}: {exc}") from exc

    def close(self) -> None:
        self._reader.close()
