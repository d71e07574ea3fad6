"""Announcements on the segments topic: a segment was sealed and committed, an index was built.

Announcements are hints: the Delta table's log stays the source of truth, and readers
reconcile with it, so a lost or repeated announcement is harmless.
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


def decode_announcement(raw: bytes) -> SegmentSealed | IndexBuilt:
    d = json.loads(raw)
    kind = d.get("kind")
    if kind == "sealed":
        return SegmentSealed(**d)
    if kind == "index":
        return IndexBuilt(**d)
    raise ValueError(f"unknown announcement kind {kind!r}")


def segment_id(shard: int, first_offset: int) -> int:
    """Deterministic, so a replayed seal produces the same segment id."""
    return (int(shard) << 48) | int(first_offset)
