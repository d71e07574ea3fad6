"""Read a collection back from Delta as its live rows: one row per primary key, deletes applied."""

from __future__ import annotations

import pyarrow as pa

from schemas.catalog import CollectionInfo
from schemas.live import dropped_by_partition, latest_alive
from walvus.storage import DELETES, ROWS, SegmentStore


def live_rows(store: SegmentStore, info: CollectionInfo, version: int | None = None) -> pa.Table:
    rows = store.read(info.collection_id, ROWS, version=version)
    if rows is None:
        return info.schema.stored_arrow_schema().empty_table()
    tombs = store.read(info.collection_id, DELETES)
    pk = info.schema.primary.name
    alive = latest_alive(
        rows.column(pk).combine_chunks(),
        rows.column("_seq").to_numpy(),
        tombs.column("_pk").combine_chunks() if tombs is not None else None,
        tombs.column("_seq").to_numpy() if tombs is not None else None,
    )
    hidden = dropped_by_partition(rows, tombs)
    if hidden is not None:
        alive &= ~hidden
    return rows.filter(pa.array(alive))
