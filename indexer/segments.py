"""Which sealed segments a collection has, and which of them carry an index file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.catalog import CollectionInfo, IndexInfo
from walvus.storage import ROWS, SegmentStore


def index_file(store: SegmentStore, collection_id: int, segment_id: int, field: str, index_id: int) -> Path:
    return store.index_dir(collection_id) / f"{segment_id}_{field}_{index_id}.faiss"


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


def index_progress(store: SegmentStore, info: CollectionInfo, field: str) -> tuple[int, int, int]:
    """(indexed_rows, total_rows, pending_rows) of the field's current index over sealed segments."""
    idx: IndexInfo | None = info.indexes.get(field)
    segs = sealed_segments(store, info.collection_id)
    total = int(np.sum(list(segs.values()))) if segs else 0
    if idx is None:
        return 0, total, total
    indexed = sum(
        n for s, n in segs.items() if index_file(store, info.collection_id, s, field, idx.index_id).exists()
    )
    return indexed, total, total - indexed
