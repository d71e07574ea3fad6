"""Tombstones compaction made needless: removed from the deletes table once they hide no stored row.

A key tombstone is needed while some stored row of its key has a lower ``_seq``; a partition
tombstone while some stored row of its shard and partition has. Purging runs after the rows
commit of a compaction, never before: a crash between the two leaves extra tombstones, which
hide nothing, and never a deleted row back.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.catalog import CollectionInfo
from schemas.collection import PARTITION_COLUMN
from walvus.storage import DELETES, ROWS, SegmentStore

log = logging.getLogger(__name__)


def purge_tombstones(store: SegmentStore, info: CollectionInfo, compaction_id: int) -> int:
    """Remove tombstones that no longer hide a stored row; returns how many went.

    A key tombstone is needed while some stored row of its key has a lower ``_seq``; a partition
    tombstone while some stored row of its shard and partition has. The deletes table is read
    first: every row a tombstone there could hide is already in the rows table read after it."""
    cid, pk = info.collection_id, info.schema.primary.name
    dels_dt = store.open(cid, DELETES)
    if dels_dt is None:
        return 0
    tombs = dels_dt.dataset().to_table()
    if tombs.num_rows == 0:
        return 0
    rows = store.read(cid, ROWS, columns=[pk, "_seq", "_shard", PARTITION_COLUMN])
    needed = _needed_tombstones(tombs, rows, pk)
    if needed.all():
        return 0
    segs = pc.unique(tombs.column("_segment").filter(pa.array(~needed))).to_pylist()
    in_segs = pc.is_in(tombs.column("_segment"), value_set=pa.array(segs, pa.int64())).to_numpy(
        zero_copy_only=False
    )
    survivors = tombs.filter(pa.array(in_segs & needed))
    purged = int(np.count_nonzero(~needed))
    store.replace_segments(
        cid,
        DELETES,
        dels_dt,
        survivors,
        segs,
        metadata={
            "walvus_operation": "compaction",
            "compaction_id": compaction_id,
            "purged_tombstones": purged,
        },
    )
    log.info(
        "purged tombstones collection=%s compaction_id=%s tombstones=%s", info.name, compaction_id, purged
    )
    return purged


def _needed_tombstones(tombs: pa.Table, rows: pa.Table | None, pk: str) -> np.ndarray:
    n = tombs.num_rows
    if rows is None or rows.num_rows == 0:
        return np.zeros(n, dtype=bool)
    seqs = tombs.column("_seq").to_numpy()
    keyed = tombs.column("_pk").is_valid().to_numpy(zero_copy_only=False)
    needed = np.zeros(n, dtype=bool)
    # key tombstones: the lowest seq of each stored key (keys live in one shard)
    first = rows.group_by(pk).aggregate([("_seq", "min")])
    t = pa.table({"k": tombs.column("_pk").cast(rows.schema.field(pk).type), "i": np.arange(n)})
    j = t.join(first.rename_columns(["k", "first"]), "k", join_type="left outer")
    i = j.column("i").to_numpy()
    first_seq = j.column("first").fill_null(np.iinfo(np.int64).max).to_numpy()
    needed[i] = first_seq < seqs[i]
    # partition tombstones: the lowest seq of each (shard, partition)
    if not keyed.all():
        groups = rows.group_by(["_shard", PARTITION_COLUMN]).aggregate([("_seq", "min")])
        lowest = {
            (int(s), p): int(q)
            for s, p, q in zip(
                groups.column("_shard").to_pylist(),
                groups.column(PARTITION_COLUMN).to_pylist(),
                groups.column("_seq_min").to_pylist(),
                strict=True,
            )
        }
        shards = tombs.column("_shard").to_pylist()
        parts = tombs.column(PARTITION_COLUMN).to_pylist()
        for k in np.flatnonzero(~keyed):  # one per dropped partition and shard: a handful
            low = lowest.get((int(shards[k]), parts[k]))
            needed[k] = low is not None and low < seqs[k]
    return needed


__all__ = ["purge_tombstones"]
