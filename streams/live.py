"""Read a collection back from Delta as its live rows: one row per primary key, deletes applied."""

from __future__ import annotations

import pyarrow as pa

from schemas.catalog import CollectionInfo
from schemas.live import stored_alive
from walvus.storage import DELETES, ROWS, SegmentStore


def live_rows(store: SegmentStore, info: CollectionInfo, version: int | None = None) -> pa.Table:
    tombs = store.read(info.collection_id, DELETES)  # first: compaction purges tombstones after rows
    rows = store.read(info.collection_id, ROWS, version=version)
    if rows is None:
        return info.schema.stored_arrow_schema().empty_table()
    return rows.filter(pa.array(stored_alive(rows, tombs, info.schema.primary.name)))
