"""Readers of the Kafka log: a ``Tail`` reads the partitions it is assigned, a ``GroupMember``
only holds what a consumer group assigns it. Every consumer walvus opens is built here, with its
settings spelled out as parameters; confluent-kafka errors become ``LogUnavailable``.

A reader never commits on its own (``enable.auto.commit`` is off for every one of them): a
position is committed only when its owner calls ``commit``, after the work it covers is durable,
which is what a kill -9 and a restart rely on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from walvus.exceptions import LogUnavailable

BEGINNING = OFFSET_BEGINNING  # a start: the first record still stored
END = OFFSET_END  # a start: the next record written
# The long poll of a tail that only needs each record soon after it is written (catalog, segments
# announcements, snapshots): the broker answers at once when a record arrives, and an idle poll
# costs it one fetch each time the wait runs out. 500 ms rather than 100 ms took a local
# deployment's idle broker from about 19 % to 9 % of a core.
IDLE_LONG_POLL_MS = 500
Partition = tuple[str, int]  # (topic, partition)
_MISSING = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION}
_TRUNCATED = {KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE}

__all__ = ["BEGINNING", "END", "GroupMember", "Message", "Partition", "Tail", "drain", "is_truncated"]


def drain(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Messages already fetched, waiting up to ``timeout`` for the first one only.

    ``Consumer.consume(n, timeout)`` waits the whole timeout unless n messages arrive, which
    would delay every read of a quiet topic by the timeout; ``poll`` returns on the first.
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, timeout=0)] if max_messages > 1 else [first]


def is_truncated(msg: Message) -> bool:
    """The message is the error of a read whose next records were deleted (``auto_offset_reset="error"``)."""
    err = msg.error()
    return err is not None and err.code() in _TRUNCATED and bool(msg.topic())


class Tail:
    """One consumer reading assigned partitions from given offsets, outside any group's assignment.

    ``group`` names the consumer group only positions are committed in (``commit``, ``committed``).
    ``read_committed``: skip records of aborted transactions and wait for open ones (CDC writes
    in transactions). ``auto_offset_reset``: what a start below the first stored record does
    (``"error"``: a message ``is_truncated`` says so, instead of jumping). ``store_offsets``: off
    keeps librdkafka from recording positions of its own. ``None`` leaves librdkafka's default.
    """

    def __init__(
        self,
        conf: Mapping[str, Any],
        *,
        group: str,
        read_committed: bool = False,
        auto_offset_reset: str | None = None,
        fetch_wait_max_ms: int | None = None,
        fetch_min_bytes: int | None = None,
        fetch_message_max_bytes: int | None = None,
        store_offsets: bool | None = None,
    ) -> None:
        settings: dict[str, Any] = {**conf, "group.id": group, "enable.auto.commit": False}
        optional = {
            "enable.auto.offset.store": store_offsets,
            "isolation.level": "read_committed" if read_committed else None,
            "fetch.message.max.bytes": fetch_message_max_bytes,
            "fetch.wait.max.ms": fetch_wait_max_ms,
            "fetch.min.bytes": fetch_min_bytes,
            "auto.offset.reset": auto_offset_reset,
        }
        settings.update({k: v for k, v in optional.items() if v is not None})
        self.group = group
        self.settings = settings  # as given to librdkafka: what this tail reads, and how
        self._consumer = Consumer(settings)

    def assign(self, starts: Mapping[Partition, int]) -> None:
        """Read exactly these partitions, each from its start offset (or ``BEGINNING``/``END``)."""
        self._call(
            "assign",
            lambda: f"cannot assign {list(starts)}",
            [TopicPartition(t, p, off) for (t, p), off in starts.items()],
        )

    def add(self, starts: Mapping[Partition, int]) -> None:
        """Read these partitions too, keeping the positions of those already assigned."""
        self._call(
            "incremental_assign",
            lambda: f"cannot assign {list(starts)}",
            [TopicPartition(t, p, off) for (t, p), off in starts.items()],
        )

    def unassign(self) -> None:
        self._call("unassign", lambda: "cannot unassign")

    def poll(self, max_messages: int, timeout: float) -> list[Message]:
        """Up to ``max_messages`` fetched messages, waiting up to ``timeout`` for the first only.
        A message may carry an error (``msg.error()``) instead of a record."""
        try:
            return drain(self._consumer, max_messages, timeout)
        except KafkaException as exc:
            raise LogUnavailable(f"read from Kafka failed: {exc}") from exc

    def positions(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The next offset this tail delivers in each partition (negative: not known yet)."""
        asked = [TopicPartition(t, p) for t, p in partitions]
        got = self._call(
            "position",
            lambda: f"cannot read positions of {[(tp.topic, tp.partition) for tp in asked]}",
            asked,
        )
        return {(tp.topic, tp.partition): tp.offset for tp in got}

    def watermarks(
        self, topic: str, partition: int, timeout: float = 10.0, *, cached: bool = False
    ) -> tuple[int, int]:
        """(low, high) of a partition; ``cached``: as of the last fetch answer, without asking."""
        marks = self._watermarks(topic, partition, timeout, cached=cached, missing_ok=False)
        assert marks is not None
        return marks

    def watermarks_if_exists(
        self, topic: str, partition: int, timeout: float = 10.0
    ) -> tuple[int, int] | None:
        """(low, high) of a partition, or None when the topic does not exist (yet, or any more)."""
        return self._watermarks(topic, partition, timeout, cached=False, missing_ok=True)

    def _watermarks(
        self, topic: str, partition: int, timeout: float, *, cached: bool, missing_ok: bool
    ) -> tuple[int, int] | None:
        tp = TopicPartition(topic, partition)
        try:
            if cached:
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            else:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
        except KafkaException as exc:
            if missing_ok and exc.args[0].code() in _MISSING:
                return None
            raise LogUnavailable(
                f"cannot read watermarks of {topic}[{partition}]: {exc}", topic=topic
            ) from exc
        return int(low), int(high)

    def offsets_at(self, topic: str, partitions: Iterable[int], ts_ms: int, timeout: float) -> dict[int, int]:
        """Per partition, the first offset written at or after ``ts_ms`` (negative when none was)."""
        tps = [TopicPartition(topic, p, int(ts_ms)) for p in partitions]
        got = self._call(
            "offsets_for_times", lambda: f"cannot look up offsets of {topic} by time", tps, timeout=timeout
        )
        for tp in got:
            if tp.error is not None:
                raise LogUnavailable(
                    f"cannot look up offsets of {topic}[{tp.partition}]: {tp.error}", topic=topic
                )
        return {tp.partition: tp.offset for tp in got}

    def committed(self, topic: str, partition: int, timeout: float = 10.0) -> int:
        """The group's committed offset of a partition (negative: none committed)."""
        tps = [TopicPartition(topic, partition)]
        return self._call(
            "committed",
            lambda: f"cannot read the committed offset of {topic}[{partition}]",
            tps,
            timeout=timeout,
        )[0].offset

    def commit(self, positions: Mapping[Partition, int], *, asynchronous: bool = False) -> None:
        """Commit the next offset to read of each partition, in ``group``."""
        offsets = [TopicPartition(t, p, off) for (t, p), off in positions.items()]
        self._call(
            "commit", lambda: f"cannot commit {dict(positions)}", offsets=offsets, asynchronous=asynchronous
        )

    def close(self) -> None:
        self._consumer.close()

    def _call(self, method: str, failed: Callable[[], str], *args: Any, **kwargs: Any) -> Any:
        """``method`` of the consumer; ``failed`` says what could not be done (formatted only then)."""
        try:
            return getattr(self._consumer, method)(*args, **kwargs)
        except KafkaException as exc:
            raise LogUnavailable(f"{failed()} (group {self.group}): {exc}") from exc


class GroupMember:
    """A member of a consumer group that holds assignments and never reads records: whatever it
    is assigned is paused. ``serve`` must be called often (it heartbeats and runs rebalances);
    ``on_change`` gets the whole assignment after every change, on the serving thread.

    ``cooperative``: the cooperative-sticky assignor, which moves only what must move. Its
    ``client.id`` names the member in the group's description (who holds what).
    """

    def __init__(
        self,
        conf: Mapping[str, Any],
        *,
        group: str,
        client_id: str,
        session_timeout_ms: int,
        heartbeat_interval_ms: int,
        cooperative: bool = False,
        metadata_refresh_ms: int | None = None,
        on_change: Callable[[frozenset[Partition]], None] = lambda held: None,
    ) -> None:
        settings: dict[str, Any] = {
            **conf,
            "group.id": group,
            "client.id": client_id,
            "enable.auto.commit": False,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_interval_ms,
        }
        if cooperative:
            settings["partition.assignment.strategy"] = "cooperative-sticky"
        if metadata_refresh_ms is not None:
            settings["topic.metadata.refresh.interval.ms"] = metadata_refresh_ms
        self.group = group
        self.settings = settings
        self._cooperative = cooperative
        self._on_change = on_change
        self._consumer = Consumer(settings)

    def subscribe(self, topics: Iterable[str]) -> None:
        if self._cooperative:
            self._consumer.subscribe(sorted(topics), on_assign=self._assigned, on_revoke=self._revoked)
        else:  # eager: librdkafka assigns what the callback is given, paused
            self._consumer.subscribe(sorted(topics), on_assign=lambda c, ps: c.pause(ps) if ps else None)

    def unsubscribe(self) -> None:
        self._consumer.unsubscribe()

    def assignment(self) -> frozenset[Partition]:
        return frozenset((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def serve(self, timeout: float) -> None:
        """Serve the group protocol for up to ``timeout`` seconds."""
        try:
            msg = self._consumer.poll(timeout)
        except KafkaException as exc:
            raise LogUnavailable(f"consumer group poll failed group={self.group}: {exc}") from exc
        if msg is not None and not msg.error():  # a record fetched before its partition was paused
            self._consumer.pause([TopicPartition(msg.topic(), msg.partition())])

    def close(self) -> None:
        """Leave the group at once: what this member held is reassigned now."""
        self._consumer.close()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)
        consumer.pause(partitions)
        self._on_change(self.assignment())

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_unassign(partitions)
        self._on_change(self.assignment())
