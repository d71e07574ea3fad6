"""Source positions, stored in the target and committed in the same transaction as the records.

Each task has its own compacted topic on the target, ``<target ns>.cdc.positions.<task id>``
(one partition). Only that task's transactional producer writes it, so reading it back with
``read_committed`` after ``init_transactions`` (which aborts whatever a crashed predecessor left
open) returns exactly the positions of the last committed transaction, and no other task's open
transaction can hold the read up. Key ``<source topic>:<partition>``; value JSON
``{"topic": ..., "partition": 0, "offset": <next source offset to read>, "ts": <ms>}``.
"""

from __future__ import annotations

import json
import logging
import time

from cdc.clusters import read_to_end
from cdc.spec import Endpoint, Positions

log = logging.getLogger(__name__)


def positions_topic(namespace: str, task_id: str) -> str:
    return f"{namespace}.cdc.positions.{task_id}"


def encode(topic: str, partition: int, offset: int) -> tuple[bytes, bytes]:
    """(key, value) of one position record."""
    value = {"topic": topic, "partition": partition, "offset": offset, "ts": int(time.time() * 1000)}
    return f"{topic}:{partition}".encode(), json.dumps(value, separators=(",", ":")).encode()


def decode(value: bytes) -> tuple[str, int, int]:
    d = json.loads(value)
    return str(d["topic"]), int(d["partition"]), int(d["offset"])


def load(target: Endpoint, task_id: str, timeout: float = 60.0) -> Positions:
    """The positions of the task's last committed transaction (empty before its first one)."""
    out: Positions = {}
    for m in read_to_end(target, positions_topic(target.namespace, task_id), timeout=timeout):
        if m.value() is None:
            continue
        try:
            topic, partition, offset = decode(m.value())
        except (ValueError, KeyError, TypeError):
            log.error("bad position record offset=%d task=%s", m.offset(), task_id)
            continue
        out.setdefault(topic, {})[partition] = offset
    return out
