"""One loaded collection in a searcher: sealed segments from Delta plus growing rows from the WAL.

Per shard, sealed containers cover WAL offsets up to ``sealed_upto[shard]`` and growing
chunks hold every applied row above it. The WAL is applied in order, so each write's
sequence number is above every earlier version of its key: a write simply marks older
versions dead. When the streams worker seals offsets up to L and the tail has applied
L, the rows in (sealed_upto, L] are read back from Delta as sealed segments and take over
the ``alive`` bits of the same rows (matched by ``_seq``) from growing, in one swap:
no row is lost or doubled, and searches in flight keep the snapshot they started with.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from indexer import IndexSpec, VectorIndex
from schemas.catalog import CollectionInfo
from schemas.live import stored_alive
from schemas.wal import Op, WalRecord
from searcher.segment import ALIVE, Container, latest_alive
from streams.segment_writer import conform, with_system_columns
from walvus.storage import DELETES, ROWS, SegmentStore, app_id

log = logging.getLogger(__name__)
MAX_GROWING_CHUNKS = 8


@dataclass
class ShardState:
    sealed_upto: int = -1  # rows at or below this offset are in sealed containers
    applied: int = -1  # last WAL offset applied


@dataclass
class LoadedCollection:
    info: CollectionInfo
    store: SegmentStore
    shards: dict[int, ShardState] = field(default_factory=dict)
    containers: tuple[Container, ...] = ()
    cond: threading.Condition = field(default_factory=threading.Condition)
    progress: int = 0
    scanned_rows: int = 0  # rows a search or query examined (partition pruning is visible here)
    _pending_seal: dict[int, int] = field(default_factory=dict)  # shard -> offset sealed by the worker

    @property
    def pk_name(self) -> str:
        return self.info.schema.primary.name

    # loading ---------------------------------------------------------------------------------
    def load(self) -> dict[int, int]:
        """Read sealed data from Delta. Returns, per shard, the WAL offset to tail from."""
        cid = self.info.collection_id
        rows_dt = self.store.open(cid, ROWS)
        dels_dt = self.store.open(cid, DELETES)
        upto: dict[int, int] = {}
        for s in range(self.info.shards_num):
            r = rows_dt.transaction_version(app_id(cid, s)) if rows_dt else None
            d = dels_dt.transaction_version(app_id(cid, s)) if dels_dt else None
            upto[s] = min(-1 if r is None else int(r), -1 if d is None else int(d))
        containers: list[Container] = []
        if rows_dt is not None:
            table = rows_dt.to_pyarrow_dataset().to_table(filter=_within(upto))
            tombs = dels_dt.to_pyarrow_dataset().to_table(filter=_within(upto)) if dels_dt else None
            table = _conform_stored(table, self.info)
            alive = stored_alive(table, tombs, self.pk_name)
            table = table.append_column("__alive", pa.array(alive))
            containers = self._segments(table)
        with self.cond:
            self.shards = {s: ShardState(sealed_upto=upto[s], applied=upto[s]) for s in upto}
            self.containers = tuple(containers)
        self._load_indexes(containers)
        self.progress = 100
        return {s: upto[s] + 1 for s in upto}

    def _segments(self, table: pa.Table) -> list[Container]:
        out = []
        if table.num_rows == 0:
            return out
        table = table.sort_by([("_segment", "ascending"), ("_seq", "ascending")])
        segs = table.column("_segment").to_numpy()
        bounds = np.flatnonzero(np.diff(segs)) + 1
        for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(segs)], strict=True):
            part = table.slice(int(start), int(stop - start))
            alive = part.column("__alive").to_numpy(zero_copy_only=False).copy()
            dead = (
                part.column("__dead").to_numpy(zero_copy_only=False).copy()
                if "__dead" in part.column_names
                else None
            )
            part = part.drop_columns([c for c in ("__alive", "__dead") if c in part.column_names])
            out.append(
                Container(
                    part,
                    self.pk_name,
                    True,
                    int(segs[start]),
                    int(part.column("_shard")[0].as_py()),
                    alive=alive,
                    dead_ts=dead,
                )
            )
        return out

    def _load_indexes(self, containers: list[Container]) -> None:
        for c in containers:
            for fname, idx in self.info.indexes.items():
                path = index_path(self.store, self.info.collection_id, c.segment_id, fname, idx.index_id)
                if path.exists():
                    self.attach_index(c.segment_id, fname, idx.index_id, path)

    # applying the WAL ------------------------------------------------------------------------
    def apply(self, shard: int, offset: int, record: WalRecord) -> None:
        """Apply one WAL record (called by the tail thread only, in offset order)."""
        st = self.shards[shard]
        if offset <= st.applied:
            return
        op = record.header.op
        if op == Op.DROP_PARTITION and record.header.partition:
            part, ts = record.header.partition, record.header.ts
            kills = [
                (c, c.killed_partition(part, ts))
                for c in self.containers
                if c.shard == shard and part in c.partition_names
            ]
            with self.cond:
                for c, new in kills:
                    if new is not None:
                        c.alive, c.dead_ts = new
        elif op in (Op.INSERT, Op.UPSERT, Op.DELETE) and record.num_rows:
            keys = record.batch.column(self.pk_name if op != Op.DELETE else 0)  # type: ignore[union-attr]
            keys = keys.cast(self.info.schema.primary.arrow_type())
            kills = [(c, c.killed(keys, record.header.ts)) for c in self.containers if c.shard == shard]
            chunk = None
            if op != Op.DELETE:
                batch = with_system_columns(record, offset, shard, -1, self.info.schema.data_arrow_schema())
                table = pa.Table.from_batches([batch])
                alive = latest_alive(
                    table.column(self.pk_name).combine_chunks(), table.column("_seq").to_numpy(), None, None
                )
                dead = np.where(alive, ALIVE, record.header.ts).astype(np.int64)  # in-batch duplicates
                chunk = Container(table, self.pk_name, False, -1, shard, alive=alive, dead_ts=dead)
            with self.cond:  # one step: old versions die as the new ones appear
                for c, new in kills:
                    if new is not None:
                        c.alive, c.dead_ts = new
                if chunk is not None:
                    self._add_growing(chunk)
        with self.cond:
            st.applied = offset
            self.cond.notify_all()

    def _add_growing(self, chunk: Container) -> None:
        growing = [c for c in self.containers if not c.sealed and c.shard == chunk.shard]
        others = [c for c in self.containers if c.sealed or c.shard != chunk.shard]
        growing.append(chunk)
        if len(growing) > MAX_GROWING_CHUNKS:
            head, tail = growing[0], growing[1:]
            merged = _merge(tail, self.pk_name)
            growing = (
                [_merge([head, merged], self.pk_name)] if merged.num_rows >= head.num_rows else [head, merged]
            )
        self.containers = tuple(others + growing)

    def note_sealed(self, shard: int, last_offset: int) -> None:
        """The worker committed this shard up to ``last_offset`` (any thread; swapped by ``maybe_swap``)."""
        with self.cond:
            self._pending_seal[shard] = max(last_offset, self._pending_seal.get(shard, -1))

    def maybe_swap(self) -> None:
        """On the tail thread: swap growing rows for sealed segments the tail has fully applied."""
        with self.cond:
            ready = [
                (s, off)
                for s, off in self._pending_seal.items()
                if s in self.shards and self.shards[s].applied >= off
            ]
            for s, _ in ready:
                del self._pending_seal[s]
        for shard, off in ready:
            if off > self.shards[shard].sealed_upto:
                self._swap(shard, off)

    def _swap(self, shard: int, last_offset: int) -> None:
        st = self.shards[shard]
        lo = st.sealed_upto
        flt = (
            (ds.field("_shard") == shard) & (ds.field("_offset") > lo) & (ds.field("_offset") <= last_offset)
        )
        table = self.store.read(self.info.collection_id, ROWS, filter=flt)
        if table is None:
            return
        table = _conform_stored(table, self.info)
        growing = [c for c in self.containers if not c.sealed and c.shard == shard]
        g_seqs = np.concatenate([c.seqs for c in growing]) if growing else np.zeros(0, np.int64)
        g_alive = np.concatenate([c.alive for c in growing]) if growing else np.zeros(0, bool)
        g_dead = np.concatenate([c.dead_ts for c in growing]) if growing else np.zeros(0, np.int64)
        pos = pc.index_in(table.column("_seq"), value_set=pa.array(g_seqs))
        missing = pos.null_count
        if missing:
            log.error(
                "sealed rows not seen in growing data collection=%s shard=%s rows=%s",
                self.info.name,
                shard,
                missing,
            )
        idx = pos.fill_null(0).to_numpy(zero_copy_only=False)
        alive = g_alive[idx] if len(g_alive) else np.zeros(table.num_rows, bool)
        missing_rows = pos.is_null().to_numpy(zero_copy_only=False)
        alive[missing_rows] = False
        dead = g_dead[idx] if len(g_dead) else np.zeros(table.num_rows, np.int64)
        dead[missing_rows] = 0
        table = table.append_column("__alive", pa.array(alive)).append_column("__dead", pa.array(dead))
        new_sealed = self._segments(table)
        kept = []
        for c in growing:
            keep = c.offsets > last_offset
            if keep.all():
                kept.append(c)
            elif keep.any():
                kept.append(
                    Container(
                        c.table.filter(pa.array(keep)),
                        self.pk_name,
                        False,
                        -1,
                        shard,
                        alive=c.alive[keep],
                        dead_ts=c.dead_ts[keep],
                    )
                )
        others = [c for c in self.containers if c.sealed or c.shard != shard]
        with self.cond:
            self.containers = tuple(others + new_sealed + kept)
            st.sealed_upto = last_offset
        self._load_indexes(new_sealed)
        log.info(
            "growing rows sealed collection=%s shard=%s upto=%s segments=%s rows=%s",
            self.info.name,
            shard,
            last_offset,
            len(new_sealed),
            table.num_rows,
        )

    def attach_index(self, segment_id: int, field_name: str, index_id: int, path: Path) -> None:
        idx_info = self.info.indexes.get(field_name)
        if idx_info is None or idx_info.index_id != index_id:
            return
        for c in self.containers:
            if c.sealed and c.segment_id == segment_id and field_name not in c.indexes:
                f = self.info.schema.field(field_name)
                assert f is not None
                spec = IndexSpec.parse(
                    idx_info.index_type, idx_info.metric_type, idx_info.params, int(f.dim or 0), f.dtype.name
                )
                mmap = self.info.properties.get("mmap.enabled", "false").lower() == "true"
                index = VectorIndex.load(path, spec, mmap=mmap)
                if index.ntotal == c.num_rows:
                    c.indexes[field_name] = (index_id, index)

    def update_info(self, info: CollectionInfo) -> None:
        dropped = {
            f
            for f in self.info.indexes
            if f not in info.indexes or info.indexes[f].index_id != self.info.indexes[f].index_id
        }
        self.info = info
        for c in self.containers:
            for f in dropped:
                c.indexes.pop(f, None)
        if any(f in info.indexes for f in dropped):
            self._load_indexes([c for c in self.containers if c.sealed])

    def mark_applied(self, shard: int, offset: int) -> None:
        """The tail is past ``offset`` with nothing left to apply below it (tail thread only)."""
        st = self.shards.get(shard)
        if st is not None and offset > st.applied:
            with self.cond:
                st.applied = offset
                self.cond.notify_all()

    def snapshot(self, at_ts: int | None = None) -> list[tuple[Container, np.ndarray]]:
        """The containers and their live-row bitmaps, consistent with each other: live now, or,
        with ``at_ts``, live at that hybrid timestamp (an iterator's pinned snapshot)."""
        with self.cond:
            return self._view(at_ts)

    def snapshot_applied(
        self, at_ts: int | None = None
    ) -> tuple[list[tuple[Container, np.ndarray]], dict[int, int]]:
        """``snapshot`` and, taken with it, the last WAL offset applied per shard: the snapshot
        holds every record at or below those offsets (``apply`` updates rows before positions)."""
        with self.cond:
            return self._view(at_ts), self._applied()

    def applied(self) -> dict[int, int]:
        with self.cond:
            return self._applied()

    def _view(self, at_ts: int | None) -> list[tuple[Container, np.ndarray]]:
        if at_ts is None:
            return [(c, c.alive) for c in self.containers]
        return [(c, c.live_at(at_ts)) for c in self.containers]

    def _applied(self) -> dict[int, int]:
        return {s: st.applied for s, st in self.shards.items()}

    # consistency -----------------------------------------------------------------------------
    def wait_applied(self, positions: dict[int, int], timeout: float) -> bool:
        """Block until every shard has applied at least the given offset."""
        with self.cond:
            return self.cond.wait_for(
                lambda: all(
                    self.shards[s].applied >= off for s, off in positions.items() if s in self.shards
                ),
                timeout,
            )


def index_path(
    store: SegmentStore, collection_id: int, segment_id: int, field_name: str, index_id: int
) -> Path:
    return store.index_dir(collection_id) / f"{segment_id}_{field_name}_{index_id}.faiss"


def _within(upto: dict[int, int]) -> ds.Expression:
    expr = None
    for s, off in upto.items():
        e = (ds.field("_shard") == s) & (ds.field("_offset") <= off)
        expr = e if expr is None else expr | e
    return expr if expr is not None else ds.scalar(False)


def _conform_stored(table: pa.Table, info: CollectionInfo) -> pa.Table:
    """Delta returns list<float> for fixed-size vectors, and older rows lack added fields."""
    target = info.schema.stored_arrow_schema()
    batches = [conform(b, target) for b in table.to_batches()]
    return pa.Table.from_batches(batches, schema=target).sort_by("_seq")


def _merge(chunks: list[Container], pk_name: str) -> Container:
    if len(chunks) == 1:
        return chunks[0]
    table = pa.concat_tables([c.table for c in chunks], promote_options="default")
    alive = np.concatenate([c.alive for c in chunks])
    dead = np.concatenate([c.dead_ts for c in chunks])
    return Container(table, pk_name, False, -1, chunks[0].shard, alive=alive, dead_ts=dead)
