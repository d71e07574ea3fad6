"""Read a range of WAL offsets straight from Kafka, outside Faust's consumer group.

The streams worker uses it to fill gaps in a growing buffer before a commit (see
``Materializer.fill_gaps``): a read-only consumer that commits nothing and reads committed
records only, as the gateway wrote them (or as CDC's transactions made them visible).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from walvus.exceptions import LogUnavailable
from walvus.log import MAX_MESSAGE_BYTES
from walvus.log_tail import Tail


class WalRangeReader:
    def __init__(self, conf: dict[str, Any], timeout: float = 30.0) -> None:
        self._conf = conf
        self._tail: Tail | None = None
        self._lock = threading.Lock()
        self.timeout = timeout

    def read(self, topic: str, partition: int, first: int, last: int) -> list[tuple[int, bytes]]:
        """The records at offsets ``first..last`` (offsets with none, such as transaction markers,
        are absent). The caller holds a record after ``last``, so the read ends there. Raises
        ``LogUnavailable`` when the log does not answer in time: the commit waits rather than going
        past records it could not see."""
        with self._lock:
            if self._tail is None:
                self._tail = Tail(
                    self._conf,
                    group="walvus-streams-gaps",
                    read_committed=True,
                    fetch_message_max_bytes=MAX_MESSAGE_BYTES,
                )
            tail = self._tail
            out: list[tuple[int, bytes]] = []
            deadline = time.monotonic() + self.timeout
            try:
                tail.assign({(topic, partition): first})
                while time.monotonic() < deadline:
                    for m in tail.poll(500, 0.5):
                        if m.error():
                            continue
                        if m.offset() > last:
                            return out
                        out.append((m.offset(), m.value()))
                    if out and out[-1][0] >= last:
                        return out
            except LogUnavailable as exc:
                raise LogUnavailable(
                    f"cannot read {topic}[{partition}] {first}..{last}: {exc}", topic=topic
                ) from exc
            finally:
                tail.unassign()
        raise LogUnavailable(
            f"reading {topic}[{partition}] {first}..{last} took over {self.timeout}s", topic=topic
        )
