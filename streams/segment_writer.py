"""The Delta sink: commit a shard's buffered WAL records as one sealed segment, exactly once.

Rows go to the collection's ``rows`` table and tombstones to its ``deletes`` table. Each
commit records the shard's last WAL offset as a Delta application transaction, and a
replay skips every record at or below the offset already committed to that table, so
the same record is never written twice, whatever the seal boundaries were before a crash.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from schemas.catalog import CollectionInfo
from schemas.collection import PARTITION_COLUMN
from schemas.segments import SegmentSealed, segment_id
from schemas.stored_rows import deletes_schema, row_seqs, with_system_columns
from schemas.wal import Op, WalRecord
from streams.growing import BufferedRecord
from walvus.exceptions import CommitConflict
from walvus.storage import DELETES, ROWS, SegmentStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommitRetry:
    """Retries of a conflicting Delta commit: ``first`` seconds, doubling to ``most``, with jitter."""

    attempts: int = 12
    first: float = 0.02
    most: float = 1.0

    def delay(self, attempt: int) -> float:
        base = min(self.most, self.first * 2.0**attempt)
        return base * (0.5 + random.random() / 2)


class SegmentWriter:
    def __init__(
        self,
        store: SegmentStore,
        lookup: Callable[[int], CollectionInfo | None],
        retry: CommitRetry | None = None,
    ) -> None:
        self.store = store
        self.lookup = lookup
        self.retry = retry or CommitRetry()
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
        data_schema = info.schema.data_arrow_schema()
        pk_type = info.schema.primary.arrow_type()
        first = records[0].offset
        seg = segment_id(shard, first)
        meta = {"segment": seg, "shard": shard, "first_offset": first, "last_offset": last, "reason": reason}
        writes = [r for r in records if r.record.header.op in (Op.INSERT, Op.UPSERT) and r.record.num_rows]
        kills = [
            r
            for r in records
            if r.record.header.op == Op.DELETE and r.record.num_rows or _drops_partition(r.record)
        ]
        # both tables' positions advance at every seal (an empty commit for the one with nothing):
        # a new searcher replays the WAL from the lower of the two, and the garbage collector
        # truncates the WAL below it (``walvus.gc``), so neither may lag behind with no reason
        forced = forced or bool(writes) or bool(kills)

        def rows_after(done: int) -> tuple[pa.Table, int] | None:
            rows = [
                with_system_columns(r.record, r.offset, shard, seg, data_schema, info.partitions)
                for r in writes
                if r.offset > done
            ]
            if not rows and not forced:
                return None
            table = pa.Table.from_batches(rows) if rows else info.schema.stored_arrow_schema().empty_table()
            return info.schema.to_delta(table), table.num_rows

        def tombstones_after(done: int) -> tuple[pa.Table, int] | None:
            dels = [self._tombstones(r, shard, seg, info) for r in kills if r.offset > done]
            if not dels and not forced:
                return None
            schema = deletes_schema(pk_type)
            table = pa.Table.from_batches(dels, schema=schema) if dels else schema.empty_table()
            return table, table.num_rows

        rows_commit = self._commit_kind(
            collection_id, ROWS, shard, last, rows_after, meta, "rows", [PARTITION_COLUMN]
        )
        dels_commit = self._commit_kind(
            collection_id, DELETES, shard, last, tombstones_after, meta, "tombstones"
        )
        wrote = rows_commit is not None or dels_commit is not None
        version, nrows = rows_commit or (-1, 0)
        ndels = dels_commit[1] if dels_commit else 0
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

    def _commit_kind(
        self,
        collection_id: int,
        kind: str,
        shard: int,
        last: int,
        table_after: Callable[[int], tuple[pa.Table, int] | None],
        meta: dict,
        count_key: str,
        partition_by: list[str] | None = None,
    ) -> tuple[int, int] | None:
        """Commit the records after the shard's committed offset, exactly once. Returns (version, rows).

        A commit conflict (another shard's seal committed to the same table first) wrote nothing:
        re-read the committed offset from Delta, so whatever is in is skipped, and try again.
        """
        for attempt in range(self.retry.attempts):
            done = self.committed(collection_id, kind, shard)
            made = table_after(done) if last > done else None
            if made is None:
                return None  # nothing new: a replay of records already committed
            table, n = made
            try:
                version = self.store.append(
                    collection_id,
                    kind,
                    table,
                    shard=shard,
                    last_offset=last,
                    metadata={**meta, count_key: n},
                    partition_by=partition_by,
                )
            except CommitConflict as exc:
                if attempt + 1 >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt)
                log.info(
                    "delta commit conflict, retrying collection_id=%s kind=%s shard=%s attempt=%s in=%.2fs error=%s",
                    collection_id,
                    kind,
                    shard,
                    attempt + 1,
                    delay,
                    exc,
                )
                self._done.pop((collection_id, kind, shard), None)
                time.sleep(delay)
                continue
            self._done[(collection_id, kind, shard)] = last
            return version, n
        return None

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
