"""How far a field's index is built: the sealed segments of the rows table against the index
files of ``SegmentStore.indexes`` (``walvus.index_store``). DescribeIndex reads it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.catalog import CollectionInfo, IndexInfo
from walvus.index_store import FAILURE
from walvus.storage import ROWS, SegmentStore


class IndexProgress(NamedTuple):
    indexed_rows: int
    total_rows: int
    pending_rows: int
    fail_reason: str = ""  # empty unless some segment failed to build


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
    cid = info.collection_id
    if not unbuilt:
        return ""
    have = {
        f.segment_id
        for f in store.indexes.files(cid)
        if f.kind == FAILURE and f.field == idx.field and f.index_id == idx.index_id
    }
    failed = [s for s in unbuilt if s in have]
    if not failed:
        return ""
    record = store.indexes.read_failure(cid, failed[0], idx.field, idx.index_id) or {}
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
    if idx is None or not segs:
        return IndexProgress(0, total, total)
    have = store.indexes.built(info.collection_id)
    built = [s for s in segs if (s, field, idx.index_id) in have]
    indexed = sum(segs[s] for s in built)
    unbuilt = sorted(set(segs) - set(built))
    return IndexProgress(indexed, total, total - indexed, _fail_reason(store, info, idx, unbuilt, len(segs)))
