"""The Delta sink: commit a shard's buffered WAL records as one sealed segment, exactly once.

Rows go to the collection's ``rows`` table and tombstones to its ``deletes`` table. Each
commit records the shard's last WAL offset as a Delta application transaction, and a
replay skips every record at or below the offset already committed to that table, so
the same record is never written twice, whatever the seal boundaries were before a crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from schemas.catalog import DEFAULT_PARTITION, CollectionInfo
from schemas.collection import PARTITION_COLUMN
from schemas.segments import PARTITION_SHIFT, SegmentSealed, segment_id
from schemas.wal import Op, WalRecord
from streams.growing import BufferedRecord
from walvus.storage import DELETES, ROWS, SegmentStore

log = logging.getLogger(__name__)
SEQ_SHIFT = 24  # _seq = offset << 24 | row index within the WAL record


def row_seqs(offset: int, n: int) -> np.ndarray:
    return (np.int64(offset) << SEQ_SHIFT) | np.arange(n, dtype=np.int64)


def deletes_schema(pk_type: pa.DataType) -> pa.Schema:
    return pa.schema(
        [
            ("_pk", pk_type),
            (PARTITION_COLUMN, pa.string()),
            ("_shard", pa.int32()),
            ("_offset", pa.int64()),
            ("_seq", pa.int64()),
            ("_ts", pa.int64()),
            ("_segment", pa.int64()),
        ]
    )


def conform(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """Bring a batch written under an older schema version to the current one (added fields -> null)."""
    if batch.schema.remove_metadata().equals(target):
        return batch
    cols = []
    for f in target:
        idx = batch.schema.get_field_index(f.name)
        cols.append(batch.column(idx).cast(f.type) if idx >= 0 else pa.nulls(batch.num_rows, type=f.type))
    return pa.RecordBatch.from_arrays(cols, schema=target)


def with_system_columns(
    record: WalRecord,
    offset: int,
    shard: int,
    seg: int,
    data_schema: pa.Schema,
    partition_ids: dict[str, int] | None = None,
) -> pa.RecordBatch:
    batch = record.batch
    assert batch is not None
    n = batch.num_rows
    if PARTITION_COLUMN in batch.schema.names:
        part = batch.column(PARTITION_COLUMN)
        batch = batch.drop_columns([PARTITION_COLUMN])
    else:
        part = pa.array([record.header.partition or DEFAULT_PARTITION] * n, type=pa.string())
    data = conform(batch, data_schema)
    extra = {
        PARTITION_COLUMN: part,
        "_shard": pa.array(np.full(n, shard, dtype=np.int32)),
        "_offset": pa.array(np.full(n, offset, dtype=np.int64)),
        "_seq": pa.array(row_seqs(offset, n)),
        "_ts": pa.array(np.full(n, record.header.ts, dtype=np.int64)),
        "_segment": pa.array(_segments(seg, part, partition_ids)),
    }
    arrays = list(data.columns) + list(extra.values())
    names = list(data.schema.names) + list(extra)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _segments(seg: int, part: pa.Array, partition_ids: dict[str, int] | None) -> np.ndarray:
    """The segment id of each row: the seal's id, plus the row's partition id (see ``segment_id``)."""
    n = len(part)
    if seg < 0 or not partition_ids:
        return np.full(n, seg, dtype=np.int64)
    enc = part.dictionary_encode()
    ids = np.array([partition_ids.get(v, 0) for v in enc.dictionary.to_pylist()], dtype=np.int64)
    return seg + (ids[enc.indices.to_numpy(zero_copy_only=False)] << PARTITION_SHIFT)


class SegmentWriter:
    def __init__(self, store: SegmentStore, lookup: Callable[[int], CollectionInfo | None]) -> None:
        self.store = store
        self.lookup = lookup
        self._done: dict[tuple[int, str, int], int] = {}

    def committed(self, collection_id: int, kind: str, shard: int) -> int:
        key = (collection_id, kind, shard)
        if key not in self._done:
            self._done[key] = self.store.committed_offset(collection_id, kind, shard)
        return self._done[key]

    def forget(self, collection_id: int, shard: int) -> None:
        """Re-read positions from Delta next time (after a rebalance another worker may have written)."""
        for kind in (ROWS, DELETES):
            self._done.pop((collection_id, kind, shard), None)

    def commit(
        self, collection_id: int, shard: int, records: Sequence[BufferedRecord], reason: str = ""
    ) -> SegmentSealed | None:
        """Commit the records not yet in Delta as one segment; ``reason`` (size, rows, age, idle,
        flush, handover) goes into the commit's metadata."""
        if not records:
            return None
        info = self.lookup(collection_id)
        if info is None or not info.active:
            log.info(
                "dropping records of a dropped collection collection_id=%s shard=%s", collection_id, shard
            )
            return None
        last = records[-1].offset
        forced = any(r.record.header.op == Op.FLUSH for r in records)
        rows_done = self.committed(collection_id, ROWS, shard)
        dels_done = self.committed(collection_id, DELETES, shard)
        data_schema = info.schema.data_arrow_schema()
        first = records[0].offset
        seg = segment_id(shard, first)
        rows = [
            with_system_columns(r.record, r.offset, shard, seg, data_schema, info.partitions)
            for r in records
            if r.offset > rows_done and r.record.header.op in (Op.INSERT, Op.UPSERT) and r.record.num_rows
        ]
        dels = [
            self._tombstones(r, shard, seg, info)
            for r in records
            if r.offset > dels_done
            and (r.record.header.op == Op.DELETE and r.record.num_rows or _drops_partition(r.record))
        ]
        meta = {"segment": seg, "shard": shard, "first_offset": first, "last_offset": last, "reason": reason}
        nrows = sum(b.num_rows for b in rows)
        ndels = sum(b.num_rows for b in dels)
        version = -1
        wrote = False
        if last > rows_done and (rows or forced):
            table = pa.Table.from_batches(rows) if rows else info.schema.stored_arrow_schema().empty_table()
            version = self.store.append(
                collection_id,
                ROWS,
                table,
                shard=shard,
                last_offset=last,
                metadata={**meta, "rows": nrows},
                partition_by=[PARTITION_COLUMN],
            )
            self._done[(collection_id, ROWS, shard)] = last
            wrote = True
        if last > dels_done and (dels or forced):
            pk_type = info.schema.primary.arrow_type()
            table = (
                pa.Table.from_batches(dels, schema=deletes_schema(pk_type))
                if dels
                else deletes_schema(pk_type).empty_table()
            )
            self.store.append(
                collection_id,
                DELETES,
                table,
                shard=shard,
                last_offset=last,
                metadata={**meta, "tombstones": ndels},
            )
            self._done[(collection_id, DELETES, shard)] = last
            wrote = True
        if not wrote:
            return None  # a replay of records already committed
        log.info(
            "sealed segment collection=%s shard=%s segment=%s rows=%s tombstones=%s offsets=%s..%s reason=%s",
            info.name,
            shard,
            seg,
            nrows,
            ndels,
            first,
            last,
            reason,
        )
        return SegmentSealed(
            collection_id=collection_id,
            collection=info.name,
            shard=shard,
            segment_id=seg,
            rows=nrows,
            tombstones=ndels,
            first_offset=first,
            last_offset=last,
            table_version=version,
        )

    @staticmethod
    def _tombstones(r: BufferedRecord, shard: int, seg: int, info: CollectionInfo) -> pa.RecordBatch:
        """Key tombstones of a DELETE, or the one partition tombstone (null key) of a DROP_PARTITION."""
        batch = r.record.batch
        pk_type = info.schema.primary.arrow_type()
        if _drops_partition(r.record):
            n, keys = 1, pa.nulls(1, type=pk_type)
        else:
            assert batch is not None
            n, keys = batch.num_rows, batch.column(info.schema.primary.name)
        part = r.record.header.partition or ""
        return pa.RecordBatch.from_arrays(
            [
                keys,
                pa.array([part] * n, type=pa.string()),
                pa.array(np.full(n, shard, dtype=np.int32)),
                pa.array(np.full(n, r.offset, dtype=np.int64)),
                pa.array(row_seqs(r.offset, n)),
                pa.array(np.full(n, r.record.header.ts, dtype=np.int64)),
                pa.array(np.full(n, seg, dtype=np.int64)),
            ],
            schema=deletes_schema(pk_type),
        )


def _drops_partition(record: WalRecord) -> bool:
    return record.header.op == Op.DROP_PARTITION and bool(record.header.partition)
