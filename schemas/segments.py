"""Announcements on the segments topic: a segment was sealed and committed, an index was built
or failed to build.

Announcements are hints: the Delta table's log stays the source of truth, and readers
reconcile with it, so a lost or repeated announcement is harmless. The durable record of a
failed build is the failure file beside the index file (``walvus.index_store``), which
DescribeIndex reads; ``IndexFailed`` tells live readers without making them poll.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


class _Json:
    """A record of the segments topic, written as JSON (``decode_announcement`` reads it back)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()


@dataclass(frozen=True)
class SegmentSealed(_Json):
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


@dataclass(frozen=True)
class IndexBuilt(_Json):
    collection_id: int
    collection: str
    segment_id: int
    field: str
    index_name: str
    index_id: int
    path: str  # where the file is (a path or an object-store URI), for people: readers ask the index store
    rows: int
    kind: str = "index"


@dataclass(frozen=True)
class IndexFailed(_Json):
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


@dataclass(frozen=True)
class CompactionRequested(_Json):
    """A client asked for a compaction (ManualCompaction); the compactor answers ``SegmentsCompacted``."""

    collection_id: int
    collection: str
    compaction_id: int
    target_size_mb: int = 0  # the client's target segment size (0: the compactor's row limit)
    kind: str = "compact"


@dataclass(frozen=True)
class SegmentsCompacted(_Json):
    """A compaction is over: ``removed`` segments were replaced by ``added`` in one Delta commit
    (``table_version`` of the rows table; -1 when there was nothing to rewrite).

    ``added`` holds ``[segment_id, shard, rows]``; ``upto`` maps each rewritten shard (as a
    string: JSON keys) to the highest WAL offset among the removed segments' rows, so a searcher
    swaps only once it holds all of them as sealed segments. ``plans`` holds
    ``[[source ids...], target id]`` per merge, for GetCompactionStateWithPlans. ``error`` is set
    when the compaction failed (the old segments stay).
    """

    collection_id: int
    collection: str
    compaction_id: int
    removed: list[int]
    added: list[list[int]]
    upto: dict[str, int]
    table_version: int
    plans: list[list] = field(default_factory=list)
    purged_rows: int = 0
    purged_tombstones: int = 0
    error: str = ""
    kind: str = "compacted"


Announcement = SegmentSealed | IndexBuilt | IndexFailed | CompactionRequested | SegmentsCompacted
_KINDS: dict[str, type] = {
    "sealed": SegmentSealed,
    "index": IndexBuilt,
    "index_failed": IndexFailed,
    "compact": CompactionRequested,
    "compacted": SegmentsCompacted,
}


def decode_announcement(raw: bytes) -> Announcement:
    d = json.loads(raw)
    cls = _KINDS.get(d.get("kind"))
    if cls is None:
        raise ValueError(f"unknown announcement kind {d.get('kind')!r}")
    return cls(**d)


PARTITION_SHIFT = 38  # offsets below 2**38; partition ids below 1024; shards above bit 48


def segment_id(shard: int, first_offset: int, partition_id: int = 0) -> int:
    """Deterministic, so a replayed seal produces the same segment id.

    A seal that spans partitions yields one segment per partition, so a search scoped to
    some partitions never reads the others' segments.
    """
    return (int(shard) << 48) | (int(partition_id) << PARTITION_SHIFT) | int(first_offset)


COMPACTED_BIT = 1 << 62  # segment ids written by compaction; streams' ids stay below 2**62


def compacted_segment_id(shard: int, partition_id: int, table_version: int, n: int) -> int:
    """The id of the ``n``-th segment a compaction that read rows-table ``table_version`` writes
    for (shard, partition): unique, since two compactions never commit from the same version."""
    serial = (int(table_version) << 10 | int(n)) & ((1 << PARTITION_SHIFT) - 1)
    return COMPACTED_BIT | (int(shard) << 48) | (int(partition_id) << PARTITION_SHIFT) | serial


def is_compacted(segment_id: int) -> bool:
    """A segment compaction wrote (growing rows, segment -1, are not)."""
    return int(segment_id) >= 0 and bool(int(segment_id) & COMPACTED_BIT)
