"""Swapping compacted segments in for the segments they replace, without a gap or a double.

A ``SegmentsCompacted`` announcement names the removed segments and the new ones. A background
thread reads the new segments from Delta (at the compaction's table version) and loads their index
files; the tail thread swaps them in once (1) the searcher holds, as sealed segments, every row the
compaction read (``sealed_upto`` of each shard at or above the announced offset) and (2) their
indexes are attached, failed, or waited for long enough: the same rule as a seal's hand-over. At
the swap the new rows take the live bits of the same rows (matched by ``_seq`` per shard) in the
containers they replace, in one step on the tail thread, which is the only writer of live bits.

The swap is refused (logged; the old segments keep answering, correctly) when a new row is not
found among the replaced ones: then the searcher's segments are not what the compaction read
(for instance an earlier compaction it could not read), and only a reload puts it right.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.dataset as ds

from schemas.catalog import CollectionInfo
from schemas.segments import CompactionRequested, SegmentsCompacted
from searcher.handoff import PreparedSeal, conform_stored, read_sealed, take_over
from searcher.segment import Container
from walvus.exceptions import StorageError
from walvus.searcher import CompactionStatus
from walvus.storage import ROWS, SegmentStore

log = logging.getLogger(__name__)
PIN_GRACE_SECONDS = 60.0  # how long after a pinned read compaction swaps wait


@dataclass
class PreparedCompaction:
    ann: SegmentsCompacted
    containers: list[Container] = field(default_factory=list)
    shard: int = -1  # all of the compaction's shards
    since: float = field(default_factory=time.monotonic)
    last_check: float = field(default_factory=time.monotonic)

    @property
    def replaced(self) -> set[int]:
        """Segment ids the swap takes out: the removed ones, and new ones the searcher may hold
        already (it read them after the commit, whole or as part of a seal)."""
        return set(self.ann.removed) | {a[0] for a in self.ann.added}

    def covered(self, sealed_upto: dict[int, int]) -> bool:
        """Every row the compaction read is in this searcher's sealed segments."""
        return all(sealed_upto.get(int(s), -1) >= off for s, off in self.ann.upto.items())

    def indexed(self, info: CollectionInfo, failed) -> bool:  # noqa: ANN001 - see PreparedSeal.indexed
        return PreparedSeal(-1, -1, self.containers).indexed(info, failed)


def read_compacted(
    store: SegmentStore, info: CollectionInfo, ann: SegmentsCompacted, conform
) -> list[Container]:  # noqa: ANN001 - conform: the collection's stored-table conformer
    """The new segments' rows, read at the compaction's version (at the latest one when that
    version's files are gone); raises ``StorageError`` when they are not all there."""
    ids = [a[0] for a in ann.added]
    if not ids:
        return []
    flt = ds.field("_segment").isin(ids)
    try:
        table = store.read(info.collection_id, ROWS, filter=flt, version=ann.table_version)
    except StorageError:
        table = store.read(info.collection_id, ROWS, filter=flt)
    if table is None:
        raise StorageError(f"compacted segments of collection {info.name} are gone")
    containers = read_sealed(conform(table, info), info.schema.primary.name)
    want = {a[0]: a[2] for a in ann.added}
    got = {c.segment_id: c.num_rows for c in containers}
    if got != want:
        raise StorageError(
            f"compaction {ann.compaction_id} of collection {info.name}: read {got} rows per segment, "
            f"announced {want} (compacted again since?)"
        )
    return containers


def swap_compacted(
    containers: tuple[Container, ...], prepared: PreparedCompaction, collection: str
) -> tuple[Container, ...] | None:
    """The containers after the swap, or None when it must be refused (see the module doc)."""
    replaced = prepared.replaced
    old = [c for c in containers if c.sealed and c.segment_id in replaced]
    new = prepared.containers
    for shard in {c.shard for c in old} | {c.shard for c in new}:
        olds = [c for c in old if c.shard == shard]
        news = [c for c in new if c.shard == shard]
        seqs = np.concatenate([c.seqs for c in olds]) if olds else np.zeros(0, np.int64)
        if any(not np.isin(c.seqs, seqs).all() for c in news):
            log.error(
                "compacted rows not among the segments they replace, keeping the old ones "
                "collection=%s compaction_id=%s shard=%s",
                collection,
                prepared.ann.compaction_id,
                shard,
            )
            return None
        take_over(news, olds, collection, shard)
    sealed = [c for c in containers if c.sealed and c.segment_id not in replaced]
    growing = [c for c in containers if not c.sealed]
    return tuple(sealed + new + growing)


class CompactionSwaps:
    """The compactions a loaded collection has read and not swapped in yet, by table version
    (the order they were committed in).

    A swap drops the old versions of rows, which a pinned snapshot (a ``query_iterator``'s later
    pages) may still need: swaps wait while pinned reads came within ``PIN_GRACE_SECONDS``."""

    def __init__(self) -> None:
        self.pending: dict[int, PreparedCompaction] = {}
        self._pinned_at = -PIN_GRACE_SECONDS
        # segments announced as removed: a seal holding one need not wait for its index, which
        # the indexer may never build (the compaction's swap replaces it right after)
        self.removed: set[int] = set()

    def pinned_read(self) -> None:
        """A read at a pinned snapshot happened (any thread)."""
        self._pinned_at = time.monotonic()

    def containers(self) -> list[Container]:
        return [c for p in list(self.pending.values()) for c in p.containers]

    def prepare(self, coll: Any, ann: SegmentsCompacted) -> None:
        """Read the new segments and load their indexes, on a thread of its own."""
        self.removed.update(ann.removed)
        threading.Thread(target=self._prepare, args=(coll, ann), daemon=True, name="compacted-read").start()

    def _prepare(self, coll: Any, ann: SegmentsCompacted) -> None:
        try:
            info = coll.info  # the schema the rows are read with
            containers = read_compacted(coll.store, info, ann, conform_stored)
        except Exception:
            log.exception(
                "reading compacted segments failed, keeping the old ones collection=%s compaction_id=%s",
                coll.info.name,
                ann.compaction_id,
            )
            return
        prepared = PreparedCompaction(ann, containers)
        with coll.cond:
            self.pending[ann.table_version] = prepared
            coll.fields_added_since(info, containers)
        coll._load_indexes(containers)

    def swap_ready(self, coll: Any) -> None:
        """On the tail thread: swap in, in commit order, the compactions that are ready."""
        if self.pending and time.monotonic() - self._pinned_at < PIN_GRACE_SECONDS:
            return  # an iterator is reading old versions of rows
        for version in sorted(self.pending):
            prepared = self.pending[version]
            upto = {s: st.sealed_upto for s, st in coll.shards.items()}
            if not prepared.covered(upto) or not coll._ready(prepared):
                return
            swapped = swap_compacted(coll.containers, prepared, coll.info.name)
            with coll.cond:
                if swapped is not None:
                    coll.containers = swapped
                del self.pending[version]
            self.removed.difference_update(prepared.ann.removed)
            if swapped is not None:
                log.info(
                    "compacted segments swapped in collection=%s compaction_id=%s removed=%s added=%s",
                    coll.info.name,
                    prepared.ann.compaction_id,
                    len(prepared.ann.removed),
                    len(prepared.ann.added),
                )


class CompactionStates:
    """Compactions seen on the segments topic (or asked for here), for GetCompactionState. Kept
    in memory, the most recent ``keep`` of them."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self._states: dict[int, CompactionStatus] = {}
        self._lock = threading.Lock()

    def note(self, ann: CompactionRequested | SegmentsCompacted) -> None:
        with self._lock:
            known = self._states.get(ann.compaction_id)
            if known is not None and known.done:
                return  # the first answer stands (a second compactor finding nothing left to do)
            if isinstance(ann, SegmentsCompacted):
                self._states[ann.compaction_id] = CompactionStatus(
                    ann.compaction_id, ann.collection, True, list(ann.removed), list(ann.plans), ann.error
                )
            elif known is None:
                self._states[ann.compaction_id] = CompactionStatus(ann.compaction_id, ann.collection)
            while len(self._states) > self.keep:
                self._states.pop(next(iter(self._states)))

    def get(self, compaction_id: int) -> CompactionStatus | None:
        with self._lock:
            return self._states.get(compaction_id)


__all__ = ["CompactionStates", "CompactionSwaps", "PreparedCompaction", "read_compacted", "swap_compacted"]
