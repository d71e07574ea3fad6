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
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from schemas.catalog import CollectionInfo
from schemas.collection import META_FIELD
from schemas.live import stored_alive
from schemas.segments import SegmentsCompacted, is_compacted
from schemas.stored_rows import with_system_columns
from schemas.timestamps import compose, physical_ms
from schemas.wal import Op, WalRecord
from searcher.compacted import CompactionSwaps, PreparedCompaction
from searcher.handoff import (
    PreparedSeal,
    conform_stored,
    loaded_filter,
    read_sealed,
    remaining,
    seal_filter,
    take_over,
)
from searcher.index_attach import (
    LISTING_ERRORS,
    Attach,
    IndexAttacher,
    attach_built,
    listing_failed,
    load_index_into,
    queue_listing,
)
from searcher.interim import GrowingIndexes, InterimSettings
from searcher.segment import ALIVE, Container, latest_alive, merge_growing, sealed_containers
from walvus.clock import SYSTEM_CLOCK, Clock, now_ms
from walvus.exceptions import StorageError
from walvus.storage import DELETES, ROWS, SegmentStore

log = logging.getLogger(__name__)
CHUNK_ROWS = 8192  # growing rows are merged into chunks of up to about this many
INDEX_RECHECK_SECONDS = 5.0


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
    interim_settings: InterimSettings = field(default_factory=InterimSettings)
    gpu_search: str = "off"  # "auto": GPU_* indexes are also searched on a GPU when there is one
    handoff_wait: float = 600.0  # seconds a seal waits for its indexes before it is swapped in anyway
    _next_gpos: dict[int, int] = field(default_factory=dict)  # shard -> growing position of the next row
    _prepared: dict[int, PreparedSeal] = field(default_factory=dict)
    _preparing: set[int] = field(default_factory=set)
    _attaching: set[tuple[int, str, int]] = field(default_factory=set)  # index files being attached now
    _seal_version: dict[int, int | None] = field(default_factory=dict)  # shard -> rows version of its seal
    compactions: CompactionSwaps = field(default_factory=CompactionSwaps)
    # the shards this searcher holds (None: all of them); a ``walvus searcher`` process holds the
    # ones its consumer group assigned to it (``searcher.ownership``)
    owned: frozenset[int] | None = None
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False)  # its wall time says which rows TTL expired
    attacher: IndexAttacher | None = field(default=None, repr=False)  # retries failed index attaches
    released: bool = False  # the registry let this copy go: nothing is attached to it any more
    # (segment id, field, index id) of the builds the indexer gave up on, as the last listing of the
    # index folder found them: a seal does not wait for those (read without I/O on the tail thread)
    failed_builds: frozenset[tuple[int, str, int]] = frozenset()

    def __post_init__(self) -> None:
        self.interim = GrowingIndexes(self.interim_settings)
        self.interim.configure(self.info)

    @property
    def pk_name(self) -> str:
        return self.info.schema.primary.name

    # loading ---------------------------------------------------------------------------------
    def load(self) -> dict[int, int]:
        """Read sealed data from Delta. Returns, per shard, the WAL offset to tail from."""
        info = self.info  # the schema the rows are read with
        cid = info.collection_id
        dels_dt = self.store.open(cid, DELETES)  # first: compaction purges tombstones after rows
        rows_dt = self.store.open(cid, ROWS)
        upto: dict[int, int] = {}
        for s in self.shard_ids():
            r = rows_dt.committed_offset(s) if rows_dt else None
            d = dels_dt.committed_offset(s) if dels_dt else None
            upto[s] = min(-1 if r is None else r, -1 if d is None else d)
        containers: list[Container] = []
        if rows_dt is not None:
            table = rows_dt.dataset().to_table(filter=loaded_filter(upto))
            tombs = dels_dt.dataset().to_table(filter=loaded_filter(upto)) if dels_dt else None
            table = conform_stored(table, info)
            alive = stored_alive(table, tombs, self.pk_name)
            table = table.append_column("__alive", pa.array(alive))
            containers = sealed_containers(table, self.pk_name)
        with self.cond:
            self.shards = {s: ShardState(sealed_upto=upto[s], applied=upto[s]) for s in upto}
            self.containers = tuple(containers)
            self.fields_added_since(info, containers)
        self._load_indexes(containers)
        self.progress = 100
        return {s: upto[s] + 1 for s in upto}

    def shard_ids(self) -> list[int]:
        """The shards this copy holds."""
        return [s for s in range(self.info.shards_num) if self.owned is None or s in self.owned]

    def _load_indexes(self, containers: list[Container]) -> None:
        """Attach the built indexes of ``containers`` now, on this thread (a load, a seal read, a
        compaction read: each waits for its indexes). A listing or a download that fails is retried
        on the attacher's thread, the segments searched exactly meanwhile: it fails nothing here."""
        if not containers:
            return
        try:
            built = self._list_index_folder()
        except LISTING_ERRORS as exc:
            listing_failed(self, exc)
            return
        self._attach_built(containers, built, queue=False)

    def attach_listed(self) -> None:
        """On the attacher's thread: list the index folder and queue there an attach of each built
        index that a sealed segment, held or being read, lacks. Raises what the listing raises."""
        built = self._list_index_folder()
        self._attach_built([c for c in self._all_containers() if c.sealed], built, queue=True)

    def _list_index_folder(self) -> set[tuple[int, str, int]]:
        """The built indexes of the index folder; its failed builds are kept in ``failed_builds``."""
        built, failed = self.store.indexes.built_and_failed(self.info.collection_id)
        self.failed_builds = frozenset(failed)
        return built

    def _attach_built(
        self, containers: list[Container], built: set[tuple[int, str, int]], queue: bool
    ) -> None:
        for c in containers:
            for fname, idx in self.info.indexes.items():
                if fname not in c.indexes and (c.segment_id, fname, idx.index_id) in built:
                    attach_built(self, c.segment_id, fname, idx.index_id, queue)

    def fields_added_since(self, info: CollectionInfo, containers: Sequence[Container]) -> None:
        """With ``cond`` held: rows read with the schema of ``info`` get, as null, the columns of the
        fields added since (``add_collection_field``, the dynamic field turned on). ``update_info``
        calls it for the containers held; a load, a seal read or a compaction read for the
        containers it brings in, in case the catalog changed while it read them."""
        if info is self.info:
            return
        added = [
            pa.field(f.name, f.arrow_type())
            for f in self.info.schema.fields
            if info.schema.field(f.name) is None
        ]
        if self.info.schema.enable_dynamic_field and not info.schema.enable_dynamic_field:
            added.append(pa.field(META_FIELD, pa.string()))  # dynamicfield.enabled turned on
        for c in containers:
            for f in added:
                if not c.has_column(f.name):
                    c.table = c.table.append_column(f, pa.nulls(c.num_rows, f.type))

    def _all_containers(self) -> list[Container]:
        """The containers held, and those read for a swap still to come (seals, compactions)."""
        with self.cond:
            prepared = [c for p in self._prepared.values() for c in p.containers]
            return [*self.containers, *prepared, *self.compactions.containers()]

    # applying the WAL ------------------------------------------------------------------------
    def apply(self, shard: int, offset: int, record: WalRecord) -> None:
        """Apply one WAL record (called by the tail thread only, in offset order)."""
        st = self.shards.get(shard)
        if st is None or offset <= st.applied:  # a shard this copy does not hold, or a replay
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
                gstart = self._next_gpos.get(shard, 0)
                self._next_gpos[shard] = gstart + table.num_rows
                chunk = Container(
                    table, self.pk_name, False, -1, shard, alive=alive, dead_ts=dead, gstart=gstart
                )
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
        """Append a record's rows. Trailing containers merge like a binary counter (the last two
        merge while the older holds no more rows than the newer), up to chunks of ``CHUNK_ROWS``:
        a shard keeps few containers and each row is copied about log2(CHUNK_ROWS / record) times."""
        growing = [c for c in self.containers if not c.sealed and c.shard == chunk.shard]
        others = [c for c in self.containers if c.sealed or c.shard != chunk.shard]
        growing.append(chunk)
        while len(growing) >= 2:
            older, newer = growing[-2], growing[-1]
            if older.num_rows >= CHUNK_ROWS or older.num_rows > newer.num_rows:
                break
            growing[-2:] = [merge_growing([older, newer], self.pk_name)]
        self.containers = tuple(others + growing)

    def note_sealed(self, shard: int, last_offset: int, table_version: int = -1) -> None:
        """The worker committed this shard up to ``last_offset`` (any thread; swapped by ``maybe_swap``)."""
        with self.cond:
            if last_offset > self._pending_seal.get(shard, -1):
                self._pending_seal[shard] = last_offset
                self._seal_version[shard] = table_version if table_version >= 0 else None

    def note_compacted(self, ann: SegmentsCompacted) -> None:
        """A compaction replaced segments (any thread): read in the background, swapped by ``maybe_swap``."""
        if ann.collection_id != self.info.collection_id:
            return
        if self.owned is not None:  # only the shards held here are read and swapped
            ann = replace(
                ann,
                added=[a for a in ann.added if int(a[1]) in self.owned],
                upto={s: off for s, off in ann.upto.items() if int(s) in self.owned},
            )
        if ann.removed or ann.added:
            self.compactions.prepare(self, ann)

    def maybe_swap(self) -> None:
        """On the tail thread: start reading what the worker sealed, and swap in what is ready."""
        with self.cond:
            due = {s: off for s, off in self._pending_seal.items() if s in self.shards}
        for shard, off in due.items():
            st = self.shards[shard]
            if off <= st.sealed_upto:
                with self.cond:
                    if self._pending_seal.get(shard) == off:
                        del self._pending_seal[shard]
                continue
            prepared = self._prepared.get(shard)
            if prepared is None:
                if shard not in self._preparing:
                    self._preparing.add(shard)
                    threading.Thread(
                        target=self._prepare, args=(shard, st.sealed_upto, off), daemon=True, name="seal-read"
                    ).start()
            elif st.applied >= prepared.upto and self._ready(prepared):
                self._swap(prepared)
        self.compactions.swap_ready(self)

    def _prepare(self, shard: int, lo: int, upto: int) -> None:
        """Background: read the sealed rows (lo, upto] of a shard and load their index files."""
        try:
            info = self.info  # the schema the rows are read with
            table = self._read_seal(shard, lo, upto)
            table = conform_stored(table, info) if table is not None else None
            prepared = PreparedSeal(shard, upto, read_sealed(table, self.pk_name))
            with self.cond:
                self._prepared[shard] = prepared  # before the file check: a later announcement finds it
                self.fields_added_since(info, prepared.containers)
            self._load_indexes(prepared.containers)
        except Exception:
            log.exception(
                "reading sealed rows failed collection=%s shard=%s upto=%s", self.info.name, shard, upto
            )
            time.sleep(1.0)  # the next tail step tries again
        finally:
            self._preparing.discard(shard)

    def _read_seal(self, shard: int, lo: int, upto: int) -> pa.Table | None:
        """The sealed rows as the seal committed them (a compaction since may have rewritten them;
        its own swap follows); at the latest version when that one's files are vacuumed."""
        version = self._seal_version.get(shard)
        if version is not None:
            try:
                return self.store.read(
                    self.info.collection_id, ROWS, filter=seal_filter(shard, lo, upto), version=version
                )
            except StorageError:
                pass
        return self.store.read(self.info.collection_id, ROWS, filter=seal_filter(shard, lo, upto))

    def _ready(self, prepared: PreparedSeal | PreparedCompaction) -> bool:
        """Every index attached; or, checked on disk every few seconds (not on every poll of the
        tail thread), built or failed; or waited long enough."""
        if prepared.indexed(self.info, _never):
            return True
        now = time.monotonic()
        if now - prepared.since >= self.handoff_wait:
            log.warning(
                "swapping in sealed rows before their index collection=%s shard=%s waited=%.0fs",
                self.info.name,
                prepared.shard,
                now - prepared.since,
            )
            return True
        if now - prepared.last_check < INDEX_RECHECK_SECONDS:
            return False
        prepared.last_check = now
        queue_listing(self)  # in case an announcement went missing (listed on the attacher's thread)
        whole = isinstance(prepared, PreparedCompaction)
        return prepared.indexed(self.info, self._build_failed if whole else self._seal_no_wait)

    def _seal_no_wait(self, c: Container, field_name: str) -> bool:
        """A seal's rows that a compaction rewrote or removed already: their index may not fit or
        never come; do not wait (the compaction's swap follows). Nor for a failed build."""
        removed = is_compacted(c.segment_id) or c.segment_id in self.compactions.removed
        return removed or self._build_failed(c, field_name)

    def _build_failed(self, c: Container, field_name: str) -> bool:
        """The indexer gave up on this segment's index for now (its failure file, as the last listing
        of the index folder saw it; ``_ready`` queues a new listing every few seconds): do not wait."""
        idx = self.info.indexes.get(field_name)
        return idx is not None and (c.segment_id, field_name, idx.index_id) in self.failed_builds

    def _swap(self, prepared: PreparedSeal) -> None:
        shard, upto = prepared.shard, prepared.upto
        growing = [c for c in self.containers if not c.sealed and c.shard == shard]
        take_over(prepared.containers, growing, self.info.name, shard)
        kept = remaining(growing, upto, self.pk_name)
        others = [c for c in self.containers if c.sealed or c.shard != shard]
        with self.cond:
            self.containers = tuple(others + prepared.containers + kept)
            self.shards[shard].sealed_upto = upto
            self._prepared.pop(shard, None)
        self.interim.handed_over(shard)
        log.info(
            "growing rows sealed collection=%s shard=%s upto=%s segments=%s rows=%s indexed=%s",
            self.info.name,
            shard,
            upto,
            len(prepared.containers),
            sum(c.num_rows for c in prepared.containers),
            prepared.indexed(self.info, _never),
        )

    def fill_interim(self) -> bool:
        """Background: add pending growing rows to interim indexes; True while some are left."""
        if not self.interim.fields:
            return False
        growing = [c for c in self.containers if not c.sealed]
        return self.interim.fill(growing, self.info.schema)

    def attach_index(
        self, segment_id: int, field_name: str, index_id: int, path: Path | None = None
    ) -> Attach:
        """Search the sealed segment's field through its index: the index store's file, or ``path``."""
        idx_info = self.info.indexes.get(field_name)
        if self.released or idx_info is None or idx_info.index_id != index_id:
            return Attach.UNWANTED
        key = (segment_id, field_name, index_id)
        with self.cond:  # one attach of a file at a time: a load or seal read, the attacher
            wanting = [
                c
                for c in self._all_containers()
                if c.sealed and c.segment_id == segment_id and field_name not in c.indexes
            ]
            if not wanting or key in self._attaching:  # nothing lacks it, or it is on its way
                return Attach.UNWANTED
            self._attaching.add(key)
        try:
            if path is not None:
                source: AbstractContextManager[Path | None] = nullcontext(path)
            else:
                source = self.store.indexes.local_index(
                    self.info.collection_id, segment_id, field_name, index_id
                )
            return load_index_into(wanting, self.info, field_name, source, self.gpu_search)
        finally:
            with self.cond:
                self._attaching.discard(key)

    def update_info(self, info: CollectionInfo) -> None:
        dropped = {
            f
            for f in self.info.indexes
            if f not in info.indexes or info.indexes[f].index_id != self.info.indexes[f].index_id
        }
        # created or replaced: its files may be built already (an announcement read before this
        # catalog update found no such index and ended)
        created = {f for f in info.indexes if f in dropped or f not in self.info.indexes}
        old = self.info
        self.info = info
        self.interim.configure(info)
        with self.cond:
            held = self._all_containers()
            self.fields_added_since(old, held)
        for c in held:
            for f in dropped:
                c.indexes.pop(f, None)
        if created:
            queue_listing(self)  # listed and downloaded on the attacher's thread, not the listener's

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
            view = [(c, c.alive) for c in self.containers]
        else:
            view = [(c, c.live_at(at_ts)) for c in self.containers]
            self.compactions.pinned_read()
        ttl = self.info.ttl_seconds
        if ttl:  # expired rows leave every read at once; compaction removes them from disk later
            now = physical_ms(at_ts) if at_ts is not None else now_ms(self.clock)
            cutoff = compose(now - ttl * 1000)
            view = [(c, c.unexpired(mask, cutoff)) for c, mask in view]
        return view

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


def _never(c: Container, field_name: str) -> bool:
    return False
