"""The index store: where a segment's index file lives, what it and its failure file are named,
and how far a field's index is built. The index workers write it, the searchers and
DescribeIndex read it, the garbage collector and ``walvus inspect`` list it.

Files live in ``SegmentStore.index_dir(collection_id)``, named ``<segment>_<field>_<index_id>``
then ``.faiss`` (the index), ``.failed.json`` (a failed build) or a writer's ``.tmp<pid>`` (a file
being written, renamed into place whole).

A failure file holds the reason, the attempts so far and the next retry (unix seconds). It is the
durable record DescribeIndex reads (every gateway process, also after restarts); the indexer
removes it once the index file is written. A dropped or recreated index has a new index id, so
old failure files no longer match it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.catalog import CollectionInfo, IndexInfo
from walvus.storage import ROWS, SegmentStore


class IndexProgress(NamedTuple):
    indexed_rows: int
    total_rows: int
    pending_rows: int
    fail_reason: str = ""  # empty unless some segment failed to build


def index_file(store: SegmentStore, collection_id: int, segment_id: int, field: str, index_id: int) -> Path:
    """Where a segment's index of ``field`` (index id ``index_id``) is, once built."""
    return store.index_dir(collection_id) / f"{segment_id}_{field}_{index_id}.faiss"


# <segment>_<field>_<index id> then .faiss, .failed.json, or a writer's temporary suffix
_INDEX_NAME = re.compile(r"^(\d+)_(.+)_(\d+)\.(?:faiss|tmp\d+|failed\.json(?:\.tmp\d+)?)$")


def parse_index_file(name: str) -> tuple[int, str, int] | None:
    """(segment id, field, index id) of a file in an index dir, or None for another file."""
    m = _INDEX_NAME.match(name)
    return None if m is None else (int(m.group(1)), m.group(2), int(m.group(3)))


def write_index(
    store: SegmentStore,
    collection_id: int,
    segment_id: int,
    field: str,
    index_id: int,
    save: Callable[[Path], None],
) -> Path:
    """Write a segment's index file whole: ``save`` writes a temporary file, renamed into place."""
    path = index_file(store, collection_id, segment_id, field, index_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save(tmp)
    os.replace(tmp, path)
    return path


def failure_file(store: SegmentStore, collection_id: int, segment_id: int, field: str, index_id: int) -> Path:
    """Where the record of a segment's failed build is, beside its index file."""
    return store.index_dir(collection_id) / f"{segment_id}_{field}_{index_id}.failed.json"


def write_failure(path: Path, record: dict) -> None:
    """Atomically replace the failure file (readers never see half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, path)


def read_failure(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sealed_segments(store: SegmentStore, collection_id: int) -> dict[int, int]:
    """segment id -> number of rows, from the rows table."""
    dataset = store.dataset(collection_id, ROWS)
    if dataset is None:
        return {}
    col = dataset.to_table(columns=["_segment"]).column("_segment")
    if len(col) == 0:
        return {}
    counts = pc.value_counts(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    segs = counts.field("values").to_numpy(zero_copy_only=False)
    ns = counts.field("counts").to_numpy(zero_copy_only=False)
    return {int(s): int(n) for s, n in zip(segs, ns, strict=True)}


def _fail_reason(
    store: SegmentStore, info: CollectionInfo, idx: IndexInfo, unbuilt: list[int], sealed: int
) -> str:
    """The field's failed segments in one line: how many failed, and the first one's reason."""
    directory = store.index_dir(info.collection_id)
    if not directory.is_dir():
        return ""
    suffix = f"_{idx.field}_{idx.index_id}.failed.json"
    names = {p.name for p in directory.iterdir() if p.name.endswith(suffix)}
    failed = [s for s in unbuilt if f"{s}{suffix}" in names]
    if not failed:
        return ""
    record = read_failure(directory / f"{failed[0]}{suffix}") or {}
    reason = record.get("reason", "unknown error")
    attempts = record.get("attempts", "?")
    return (
        f"{len(failed)} of {sealed} sealed segments failed to build index {idx.index_name} "
        f"on field {idx.field}; segment {failed[0]} after {attempts} attempts: {reason}"
    )


def index_progress(store: SegmentStore, info: CollectionInfo, field: str) -> IndexProgress:
    """(indexed_rows, total_rows, pending_rows, fail_reason) of the field's current index."""
    idx: IndexInfo | None = info.indexes.get(field)
    segs = sealed_segments(store, info.collection_id)
    total = int(np.sum(list(segs.values()))) if segs else 0
    if idx is None:
        return IndexProgress(0, total, total)
    built = [s for s in segs if index_file(store, info.collection_id, s, field, idx.index_id).exists()]
    indexed = sum(segs[s] for s in built)
    unbuilt = sorted(set(segs) - set(built))
    return IndexProgress(indexed, total, total - indexed, _fail_reason(store, info, idx, unbuilt, len(segs)))
