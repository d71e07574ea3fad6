"""Snapshot and restore-job records: what the compacted snapshots topic holds.

A snapshot pins a consistent prefix of a collection's WAL as it is stored in Delta: the
versions of the ``rows`` and ``deletes`` tables, and per shard the last WAL offset included
(``offsets``). Rows and tombstones with ``_offset`` up to their shard's offset are the
snapshot; anything a later commit of those versions holds is ignored. The record also keeps
the collection's whole catalog state (schema, partitions, indexes, properties), so a restore
needs nothing else, also after the collection was dropped.

Keys: ``snapshot/<collection>/<name>`` (snapshot names are unique per collection name, as in
Milvus) and ``restore/<job_id>``. A dropped snapshot is a tombstone (null value).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from schemas.catalog import CollectionInfo

SNAPSHOT_PREFIX = "snapshot/"
RESTORE_PREFIX = "restore/"


def snapshot_key(collection: str, name: str) -> str:
    return f"{SNAPSHOT_PREFIX}{collection}/{name}"


def restore_key(job_id: int) -> str:
    return f"{RESTORE_PREFIX}{job_id}"


@dataclass(frozen=True)
class SnapshotRecord:
    name: str
    collection: str
    collection_id: int
    info: CollectionInfo  # the collection's catalog state when the snapshot was taken
    rows_version: int  # Delta version of the rows table (-1: no table yet)
    deletes_version: int  # Delta version of the deletes table (-1: no table yet)
    offsets: dict[int, int]  # shard -> last WAL offset included
    created_ts: int  # hybrid timestamp
    created_ms: int  # wall clock, unix ms
    description: str = ""
    compaction_protection_seconds: int = 0  # asked for; a snapshot pins its versions until dropped

    @property
    def key(self) -> str:
        return snapshot_key(self.collection, self.name)

    @property
    def partition_names(self) -> list[str]:
        return sorted(self.info.partitions, key=lambda p: self.info.partitions[p])

    def to_json(self) -> bytes:
        d = {k: v for k, v in self.__dict__.items() if k != "info"}
        d["info"] = json.loads(self.info.to_json())
        d["offsets"] = {str(k): v for k, v in self.offsets.items()}
        return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SnapshotRecord:
        d = json.loads(raw)
        d["info"] = CollectionInfo.from_json(json.dumps(d["info"]).encode())
        d["offsets"] = {int(k): int(v) for k, v in d["offsets"].items()}
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


class RestoreState:
    """Milvus's ``RestoreSnapshotState`` names; the gateway maps them to the proto enum."""

    PENDING = "RestoreSnapshotPending"
    EXECUTING = "RestoreSnapshotExecuting"
    COMPLETED = "RestoreSnapshotCompleted"
    FAILED = "RestoreSnapshotFailed"
    FINAL = frozenset({COMPLETED, FAILED})


@dataclass(frozen=True)
class RestoreJob:
    job_id: int
    snapshot: str
    source: str  # the collection the snapshot belongs to
    target: str  # the collection restored into
    state: str = RestoreState.PENDING
    rows_total: int = 0
    rows_done: int = 0
    reason: str = ""
    start_ms: int = 0
    updated_ms: int = 0  # last change; a job not final and not updated for long has stalled
    end_ms: int = 0

    @property
    def key(self) -> str:
        return restore_key(self.job_id)

    @property
    def progress(self) -> int:
        """Percent of the rows written; 100 only once the job completed."""
        if self.state == RestoreState.COMPLETED:
            return 100
        if self.rows_total <= 0:
            return 0
        return min(99, self.rows_done * 100 // self.rows_total)

    def time_cost_ms(self, now_ms: int) -> int:
        return max(0, (self.end_ms or now_ms) - self.start_ms)

    def evolve(self, **changes: Any) -> RestoreJob:
        return replace(self, **changes)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RestoreJob:
        d = json.loads(raw)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})
