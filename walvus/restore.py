"""Restoring a snapshot into a new collection, through the ordinary write path.

``snapshot_rows`` reads the snapshot's pinned Delta versions (time travel), keeps the rows and
tombstones of the snapshot's WAL prefix and computes which rows were live then
(``schemas.live.stored_alive``). ``RestoreRunner`` creates the target collection with the
snapshot's schema, properties, partitions and index definitions, then writes the live rows as
upserts in Arrow batches, partition by partition, so the WAL, the streams worker, the indexer,
the searchers and CDC see ordinary writes. Its jobs' states go to the snapshots topic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.catalog import DEFAULT_PARTITION, CatalogEvent, CollectionInfo
from schemas.collection import PARTITION_COLUMN, check_name
from schemas.exceptions import CollectionExists
from schemas.live import stored_alive
from schemas.snapshots import RestoreJob, RestoreState, SnapshotRecord
from schemas.timestamps import compose
from walvus.exceptions import RestoreJobNotFound, StorageError
from walvus.settings import SnapshotSettings
from walvus.snapshots import SnapshotBook
from walvus.storage import DELETES, ROWS, SegmentStore

if TYPE_CHECKING:
    from walvus.write_api import WriteApi

log = logging.getLogger(__name__)
TOMB_COLUMNS = ["_pk", PARTITION_COLUMN, "_shard", "_offset", "_seq"]
KEY_COLUMNS = [PARTITION_COLUMN, "_shard", "_offset", "_seq", "_ts"]


def within_cut(table: pa.Table, offsets: dict[int, int]) -> pa.Table:
    """The rows of ``table`` whose WAL offset is at most their shard's offset in ``offsets``."""
    if table.num_rows == 0:
        return table
    shard = table.column("_shard").to_numpy().astype(np.int64)
    cuts = np.full(max([int(shard.max()), *offsets]) + 1, -1, dtype=np.int64)
    for s, o in offsets.items():
        cuts[s] = o
    keep = table.column("_offset").to_numpy() <= cuts[shard]
    return table if keep.all() else table.filter(pa.array(keep))


def live_seqs(store: SegmentStore, rec: SnapshotRecord) -> dict[int, np.ndarray]:
    """Per shard, the sorted ``_seq`` of the rows live in the snapshot (read from key columns only)."""
    info = rec.info
    pk = info.schema.primary.name
    rows = _pinned(store, rec, ROWS, rec.rows_version, [pk, *KEY_COLUMNS])
    if rows is None or rows.num_rows == 0:
        return {}
    rows = within_cut(rows, rec.offsets)
    tombs = _pinned(store, rec, DELETES, rec.deletes_version, TOMB_COLUMNS)
    tombs = None if tombs is None else within_cut(tombs, rec.offsets)
    alive = stored_alive(rows, tombs, pk)
    if info.ttl_seconds:  # rows expired when the snapshot was taken stay expired
        alive &= rows.column("_ts").to_numpy() >= compose(rec.created_ms - info.ttl_seconds * 1000)
    shard = rows.column("_shard").to_numpy()[alive]
    seq = rows.column("_seq").to_numpy()[alive]
    return {int(s): np.sort(seq[shard == s]) for s in np.unique(shard)}


def snapshot_batches(
    store: SegmentStore,
    rec: SnapshotRecord,
    batch: int = 65_536,
    live: dict[int, np.ndarray] | None = None,
) -> Iterator[pa.Table]:
    """The rows live in the snapshot, about ``batch`` at a time: the data columns plus ``_partition``.

    Which rows are live comes from the key columns; the full rows are then scanned at the pinned
    version one record batch at a time, so a restore holds one batch of vectors, not the table.
    """
    live = live_seqs(store, rec) if live is None else live
    if not live:
        return
    out_schema = rec.info.schema.data_arrow_schema().append(pa.field(PARTITION_COLUMN, pa.string()))
    dt = store.open(rec.collection_id, ROWS, rec.rows_version)
    if dt is None:
        raise StorageError(
            f"the rows table of collection {rec.collection} is gone", collection=rec.collection
        )
    dataset = dt.dataset()
    present = [f.name for f in out_schema if f.name in dataset.schema.names]
    pending: list[pa.Table] = []
    held = 0
    try:
        for b in dataset.to_batches(columns=[*present, "_shard", "_seq"], batch_size=batch):
            keep = _is_live(b.column("_shard").to_numpy(), b.column("_seq").to_numpy(), live)
            if not keep.any():
                continue
            pending.append(_conform(pa.Table.from_batches([b]).filter(pa.array(keep)), out_schema))
            held += pending[-1].num_rows
            if held >= batch:
                yield pa.concat_tables(pending)
                pending, held = [], 0
    except (OSError, pa.ArrowInvalid) as exc:
        raise StorageError(
            f"cannot read the rows of snapshot {rec.name}: {exc}", collection=rec.collection
        ) from exc
    if pending:
        yield pa.concat_tables(pending)


def snapshot_rows(store: SegmentStore, rec: SnapshotRecord) -> pa.Table:
    """All the rows live in the snapshot, as one table (``snapshot_batches`` joined)."""
    parts = list(snapshot_batches(store, rec))
    if parts:
        return pa.concat_tables(parts)
    return rec.info.schema.data_arrow_schema().append(pa.field(PARTITION_COLUMN, pa.string())).empty_table()


def _is_live(shard: np.ndarray, seq: np.ndarray, live: dict[int, np.ndarray]) -> np.ndarray:
    keep = np.zeros(len(seq), dtype=bool)
    for s, seqs in live.items():
        rows = np.flatnonzero(shard == s)
        if len(rows) and len(seqs):
            at = np.minimum(np.searchsorted(seqs, seq[rows]), len(seqs) - 1)
            keep[rows] = seqs[at] == seq[rows]
    return keep


def _conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    cols = []
    for f in schema:
        if f.name in rows.column_names:
            cols.append(rows.column(f.name).cast(f.type))
        else:  # a field added after these rows were written
            cols.append(pa.nulls(rows.num_rows, type=f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _pinned(
    store: SegmentStore, rec: SnapshotRecord, kind: str, version: int, columns: list[str] | None = None
) -> pa.Table | None:
    """A table as of its pinned version (time travel); None when the snapshot had no such table."""
    if version < 0:
        return None
    table = store.read(rec.collection_id, kind, columns=columns, version=version)
    if table is None:
        raise StorageError(
            f"the {kind} table of collection {rec.collection} ({rec.collection_id}) is gone, "
            f"snapshot {rec.name} needs its version {version}",
            collection=rec.collection,
        )
    return table


def batch_rows(table: pa.Table, most_rows: int, max_bytes: int) -> int:
    """Rows per write: at most ``most_rows``, and batches well under the request size limit."""
    if table.num_rows == 0:
        return most_rows
    per_row = max(1, table.nbytes // table.num_rows)
    return max(1, min(most_rows, max_bytes // 2 // per_row))


def write_rows(
    walvus: WriteApi,
    target: CollectionInfo,
    tables: Iterable[pa.Table],
    *,
    batch: int,
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Upsert the rows into ``target``, each into its partition, in writes of at most ``batch`` rows
    and half the request size limit. Returns the rows written."""
    names = target.schema.data_arrow_schema().names
    max_bytes = int(walvus.limits.max_request_mb * 1024 * 1024)
    written = 0
    for table in tables:
        if target.schema.partition_key is not None:
            groups: list[tuple[str | None, pa.Table]] = [(None, table)]  # the key routes each row again
        else:
            part = table.column(PARTITION_COLUMN)
            groups = [(p, table.filter(pc.equal(part, p))) for p in pc.unique(part).to_pylist()]
        for partition, rows in groups:
            if partition is not None and partition not in target.partitions:
                # created while the snapshot was taken, after its catalog state was read
                target = walvus.create_partition(target.name, partition)
            step = batch_rows(rows, batch, max_bytes)
            for start in range(0, rows.num_rows, step):
                chunk = rows.slice(start, step)
                walvus.upsert(target.name, {n: chunk.column(n).combine_chunks() for n in names}, partition)
                written += chunk.num_rows
                progress(chunk.num_rows)
    return written


def create_target(walvus: WriteApi, rec: SnapshotRecord, target: str) -> CollectionInfo:
    """The target collection as the snapshot's was: schema, properties, partitions, index definitions."""
    src = rec.info
    info = walvus.create_collection(
        target,
        src.schema,
        shards_num=src.shards_num,
        num_partitions=src.num_partitions or None,
        consistency_level=src.consistency_level,
        properties=src.properties,
    )
    if src.schema.partition_key is None:
        for p in rec.partition_names:
            if p != DEFAULT_PARTITION:
                info = walvus.create_partition(target, p)
    if src.indexes:
        ts = walvus.clock.now()
        indexes = {
            f: replace(i, index_id=ts + n, created_ts=ts) for n, (f, i) in enumerate(src.indexes.items())
        }
        info = walvus.publish(info.evolve(CatalogEvent.CREATE_INDEX, indexes=indexes))
    return info


class RestoreRunner:
    """Runs restore jobs one at a time on a background thread; their states live in the book."""

    def __init__(
        self, walvus: WriteApi, book: SnapshotBook, settings: SnapshotSettings | None = None
    ) -> None:
        self.w = walvus
        self.book = book
        self.settings = settings or SnapshotSettings()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="restore")
        self._active: set[int] = set()  # jobs this process queued and has not finished

    @property
    def stall_ms(self) -> int:
        return int(self.settings.restore_stall_seconds * 1000)

    def start(self, rec: SnapshotRecord, target: str) -> RestoreJob:
        """Create the target collection now (a name in use is refused at once), write its rows later."""
        check_name("collection", target)
        if self.w.catalog.get(target) is not None:
            raise CollectionExists(target)
        info = create_target(self.w, rec, target)
        now = _now_ms()
        job = RestoreJob(
            job_id=self.w.clock.now(),
            snapshot=rec.name,
            source=rec.collection,
            target=target,
            start_ms=now,
            updated_ms=now,
        )
        self.book.put_job(job)
        log.info(
            "restore queued job=%d snapshot=%s source=%s target=%s",
            job.job_id,
            rec.name,
            rec.collection,
            target,
        )
        self._active.add(job.job_id)
        self._pool.submit(self._run, job, rec, info)
        return job

    def state(self, job_id: int) -> RestoreJob:
        """The job as recorded; one that stopped making progress (its gateway died) is failed."""
        job = self.book.job(job_id)
        if job is None:
            raise RestoreJobNotFound(job_id)
        return self.checked(job)

    def checked(self, job: RestoreJob) -> RestoreJob:
        """A job another process ran that has not moved for ``restore_stall_seconds`` is failed
        (this process's own jobs are alive, also while they wait for their turn)."""
        now = _now_ms()
        stalled = now - job.updated_ms > self.stall_ms and job.job_id not in self._active
        if job.state not in RestoreState.FINAL and stalled:
            return job.evolve(
                state=RestoreState.FAILED,
                reason=f"no progress for {self.settings.restore_stall_seconds:g}s: the gateway running "
                "the restore stopped; drop the target collection and restore again",
                end_ms=job.updated_ms,
            )
        return job

    def _run(self, job: RestoreJob, rec: SnapshotRecord, target: CollectionInfo) -> None:
        try:
            job = self.book.put_job(job.evolve(state=RestoreState.EXECUTING, updated_ms=_now_ms()))
            batch = self.settings.restore_batch_rows
            live = live_seqs(self.w.store, rec)
            total = sum(len(v) for v in live.values())
            job = self.book.put_job(job.evolve(rows_total=total, updated_ms=_now_ms()))
            done = [0]
            last = [time.monotonic()]

            def progress(n: int) -> None:
                nonlocal job
                done[0] += n
                if time.monotonic() - last[0] >= 1.0:  # the topic gets a progress record a second
                    last[0] = time.monotonic()
                    job = self.book.put_job(job.evolve(rows_done=done[0], updated_ms=_now_ms()))

            write_rows(
                self.w,
                target,
                snapshot_batches(self.w.store, rec, batch, live),
                batch=batch,
                progress=progress,
            )
            now = _now_ms()
            job = self.book.put_job(
                job.evolve(state=RestoreState.COMPLETED, rows_done=done[0], updated_ms=now, end_ms=now)
            )
            log.info("restore completed job=%d target=%s rows=%d", job.job_id, job.target, done[0])
        except Exception as exc:  # a failed job is reported, never raised into the pool
            log.exception("restore failed job=%d target=%s", job.job_id, job.target)
            now = _now_ms()
            try:
                self.book.put_job(
                    job.evolve(
                        state=RestoreState.FAILED,
                        reason=f"{type(exc).__name__}: {exc}",
                        updated_ms=now,
                        end_ms=now,
                    )
                )
            except Exception:
                log.exception("cannot record the failure of restore job=%d", job.job_id)
        finally:
            self._active.discard(job.job_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _now_ms() -> int:
    return int(time.time() * 1000)
