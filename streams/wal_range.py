"""Read a range of WAL offsets straight from Kafka, outside Faust's consumer group.

The streams worker uses it to fill gaps in a growing buffer before a commit (see
``Materializer.fill_gaps``): a read-only consumer that commits nothing and reads committed
records only, as the gateway wrote them (or as CDC's transactions made them visible).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from walvus.exceptions import LogUnavailable


class WalRangeReader:
    def __init__(self, conf: dict[str, Any], timeout: float = 30.0) -> None:
        self._conf = {
            **conf,
            "group.id": "walvus-streams-gaps",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.message.max.bytes": 68_157_440,
        }
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()
        self.timeout = timeout

    def read(self, topic: str, partition: int, first: int, last: int) -> list[tuple[int, bytes]]:
        """The records at offsets ``first..last`` (offsets with none, such as transaction markers,
        are absent). The caller holds a record after ``last``, so the read ends there. Raises
        ``LogUnavailable`` when the log does not answer in time: the commit waits rather than going
        past records it could not see."""
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer(self._conf)
            consumer = self._consumer
            consumer.assign([TopicPartition(topic, partition, first)])
            out: list[tuple[int, bytes]] = []
            deadline = time.monotonic() + self.timeout
            try:
                while time.monotonic() < deadline:
                    for m in consumer.consume(500, timeout=0.5):
                        if m.error():
                            continue
                        if m.offset() > last:
                            return out
                        out.append((m.offset(), m.value()))
                    if out and out[-1][0] >= last:
                        return out
            except KafkaException as exc:
                raise LogUnavailable(
                    f"cannot read {topic}[{partition}] {first}..{last}: {exc}", topic=topic
                ) from exc
            finally:
                consumer.unassign()
        raise LogUnavailable(
            f"reading {topic}[{partition}] {first}..{last} took over {self.timeout}s", topic=topic
        )
