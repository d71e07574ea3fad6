"""Announcements on the segments topic: a segment was sealed and committed, an index was built
or failed to build.

Announcements are hints: the Delta table's log stays the source of truth, and readers
reconcile with it, so a lost or repeated announcement is harmless. The durable record of a
failed build is the failure file beside the index file (``indexer.segments.failure_file``),
which DescribeIndex reads; ``IndexFailed`` tells live readers without making them poll.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SegmentSealed:
    collection_id: int
    collection: str
    shard: int
    segment_id: int
    rows: int
    tombstones: int
    first_offset: int
    last_offset: int
    table_version: int
    kind: str = "sealed"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()


@dataclass(frozen=True)
class IndexBuilt:
    collection_id: int
    collection: str
    segment_id: int
    field: str
    index_name: str
    index_id: int
    path: str
    rows: int
    kind: str = "index"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()


@dataclass(frozen=True)
class IndexFailed:
    """The indexer could not build this segment's index; it retries at ``next_retry_ts`` (unix s)."""

    collection_id: int
    collection: str
    segment_id: int
    field: str
    index_name: str
    index_id: int
    reason: str
    attempts: int
    next_retry_ts: float
    kind: str = "index_failed"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()


Announcement = SegmentSealed | IndexBuilt | IndexFailed


def decode_announcement(raw: bytes) -> Announcement:
    d = json.loads(raw)
    kind = d.get("kind")
    if kind == "sealed":
        return SegmentSealed(**d)
    if kind == "index":
        return IndexBuilt(**d)
    if kind == "index_failed":
        return IndexFailed(**d)
    raise ValueError(f"unknown announcement kind {kind!r}")


PARTITION_SHIFT = 38  # offsets below 2**38; partition ids below 1024; shards above bit 48


def segment_id(shard: int, first_offset: int, partition_id: int = 0) -> int:
    """Deterministic, so a replayed seal produces the same segment id.

    A seal that spans partitions yields one segment per partition, so a search scoped to
    some partitions never reads the others' segments.
    """
    return (int(shard) << 48) | (int(partition_id) << PARTITION_SHIFT) | int(first_offset)
