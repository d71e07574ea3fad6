"""Interim indexes of one loaded collection's growing rows: an HNSW per (shard, vector field).

Which fields get one: FLOAT_VECTOR fields whose collection index is approximate (a FLAT index
promises exact results, and float16, bfloat16 and binary vectors stay exact), unless the
collection property ``interim_index.enabled`` is ``false`` or the searcher setting turns them
off. A shard gets its index once it holds ``min_rows`` growing rows.

A background thread calls ``fill``: it adds the rows applied since the last call to a private
graph (``InterimBuilder``) and now and then publishes an immutable copy, which searches use
without locks; rows not yet published are scanned exactly, so the tail thread never waits on a
graph insert and a search never waits on an add. Copies are spaced out (at least
``publish_seconds``, and twenty times what the last copy took) so they cost under 5 % of a core.
When a seal hands rows over to sealed segments, the shard's graph is closed (published one
last time) and a new generation starts where it ends, so every row is added to a graph once; a
closed generation keeps serving the rows of it still growing (the handed-over ones are simply no
longer in any search's bitmap) and is dropped once all its rows are sealed. A graph also closes
at ``generation_rows``, which bounds what a copy costs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from indexer import InterimBuilder, InterimIndex
from schemas.catalog import CollectionInfo
from schemas.collection import CollectionSchema
from schemas.types import DataType
from searcher.segment import Container

log = logging.getLogger(__name__)
PROPERTY = "interim_index.enabled"
EXACT_INDEX_TYPES = ("FLAT", "GPU_BRUTE_FORCE")
Key = tuple[int, str]  # (shard, field)
COPY_SPACING = 20  # publish at most once per this many times the last copy took


@dataclass(frozen=True)
class InterimSettings:
    enabled: bool = True
    min_rows: int = 1024
    m: int = 16
    ef_construction: int = 40
    ef_search: int = 64
    batch_rows: int = 1024  # rows per add call (faiss pays a per-call cost in the graph's size)
    publish_seconds: float = 0.5
    generation_rows: int = 131_072  # a graph closes at this size: copies stay cheap


def interim_fields(info: CollectionInfo, settings: InterimSettings) -> dict[str, str]:
    """field -> metric of every field whose growing rows get an interim index."""
    if not settings.enabled or info.properties.get(PROPERTY, "true").strip().lower() == "false":
        return {}
    out = {}
    for name, idx in info.indexes.items():
        f = info.schema.field(name)
        if (
            f is not None
            and f.dtype == DataType.FLOAT_VECTOR
            and idx.index_type.upper() not in EXACT_INDEX_TYPES
        ):
            out[name] = idx.metric_type.upper()
    return out


class GrowingIndexes:
    def __init__(self, settings: InterimSettings) -> None:
        self.settings = settings
        self.fields: dict[str, str] = {}
        # published generations per (shard, field), oldest first: what searches use
        self._current: dict[Key, tuple[InterimIndex, ...]] = {}
        self._work: dict[Key, InterimBuilder] = {}  # the fill thread's graph of the newest generation
        self._retire: set[Key] = set()  # generations to close at their next fill
        self._lock = threading.Lock()

    def configure(self, info: CollectionInfo) -> None:
        """Follow the collection's indexes and properties: drop indexes of fields that lost theirs."""
        fields = interim_fields(info, self.settings)
        with self._lock:
            self.fields = fields
            self._current = {
                k: gens
                for k, gens in self._current.items()
                if all(fields.get(k[1]) == g.metric for g in gens)
            }
            self._work = {k: w for k, w in self._work.items() if fields.get(k[1]) == w.metric}

    def lookup(self, field: str) -> Callable[[int], tuple[InterimIndex, ...]] | None:
        """shard -> the published interim indexes of ``field``, oldest first (None: the field has none)."""
        if field not in self.fields:
            return None
        current = self._current
        return lambda shard: current.get((shard, field), ())

    def handed_over(self, shard: int) -> None:
        """Rows of ``shard`` moved to sealed segments: close its newest generations, so the rows
        handed over leave with whole generations instead of being added again to a new graph."""
        with self._lock:
            self._retire.update(k for k in self._work if k[0] == shard)

    def rows(self) -> int:
        """Rows in published interim indexes."""
        return sum(g.ntotal for gens in list(self._current.values()) for g in gens)

    def fill(self, growing: Sequence[Container], schema: CollectionSchema) -> bool:
        """Add up to ``batch_rows`` pending rows per graph and publish what is due; True while
        rows are left to add."""
        by_shard: dict[int, list[Container]] = {}
        for c in growing:
            by_shard.setdefault(c.shard, []).append(c)
        with self._lock:  # shards whose growing rows all went to sealed segments
            for table in (self._current, self._work):
                for key in [k for k in table if k[0] not in by_shard]:
                    del table[key]
        more = False
        for shard, chunks in by_shard.items():
            chunks.sort(key=lambda c: c.gstart)
            rows = sum(c.num_rows for c in chunks)
            for field, metric in list(self.fields.items()):
                more |= self._fill_one((shard, field), metric, chunks, rows, schema)
        return more

    def _fill_one(
        self, key: Key, metric: str, chunks: list[Container], rows: int, schema: CollectionSchema
    ) -> bool:
        s = self.settings
        first, last = chunks[0].gstart, chunks[-1].gstart + chunks[-1].num_rows
        with self._lock:
            gens = tuple(g for g in self._current.get(key, ()) if g.end > first)  # handed over: gone
            self._current[key] = gens
            work = self._work.get(key)
            if work is None:
                start = max(first, gens[-1].end) if gens else first
                if not gens and rows < s.min_rows:  # few rows: exact scans are cheaper
                    return False
                f = schema.field(key[1])
                dim = int(f.dim or 0) if f is not None else 0
                work = self._work[key] = InterimBuilder(dim, metric, start, s.m, s.ef_construction)
            closing = key in self._retire or work.end - work.start >= s.generation_rows
        x = pending_vectors(chunks, work.end, s.batch_rows, schema, key[1])
        if x is None:  # the rows it would continue from were handed over: start after them
            with self._lock:
                if self._work.get(key) is work:
                    del self._work[key]
                self._retire.discard(key)
            return True
        if len(x) and not closing:
            work.add(x)
        now = time.monotonic()
        due = now - work.published_at >= max(s.publish_seconds, COPY_SPACING * work.copy_seconds)
        published = gens[-1] if gens and gens[-1].start == work.start else None
        if work.end > work.start and (closing or (due and (published is None or work.end > published.end))):
            copy = work.publish() if published is None or work.end > published.end else published
            with self._lock:
                if self._work.get(key) is work:
                    kept = gens[:-1] if published is not None else gens
                    self._current[key] = (*kept, copy)
                    if closing:  # the next fill starts a new generation where this one ends
                        del self._work[key]
                        self._retire.discard(key)
        elif closing and work.end == work.start:
            with self._lock:
                self._work.pop(key, None)
                self._retire.discard(key)
        return closing or work.end < last


def pending_vectors(
    chunks: list[Container], end: int, limit: int, schema: CollectionSchema, field: str
) -> np.ndarray | None:
    """Vectors of growing positions ``end, end + 1, ...`` (at most ``limit``), or None when the
    chunks no longer hold position ``end`` (it was handed over to a sealed segment)."""
    parts, need = [], limit
    if not chunks or chunks[0].gstart > end:
        return None
    for c in chunks:
        stop = c.gstart + c.num_rows
        if stop <= end or need <= 0:
            continue
        lo = end - c.gstart if c.gstart < end else 0
        hi = min(c.num_rows, lo + need)
        parts.append(c.vectors(schema, field)[lo:hi])
        need -= hi - lo
        end = c.gstart + hi
    if not parts:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


class InterimGroup:
    """The rows of one search's snapshot that one interim index covers, as one bitmap."""

    def __init__(self, ix: InterimIndex) -> None:
        self.ix = ix
        self.end = ix.end  # read once: rows added during this search stay out of its bitmap
        self.bits = np.zeros(self.end - ix.start, bool)
        self.members: list[tuple[Container, int, np.ndarray]] = []  # (container, flat base, covered mask)

    def take(self, c: Container, mask: np.ndarray, base: int) -> np.ndarray | None:
        """Put the covered part of ``c``'s allowed rows in the bitmap; return the rest (or None)."""
        lo = max(c.gstart, self.ix.start)
        hi = min(c.gstart + c.num_rows, self.end)
        if lo >= hi:
            return mask
        a, b = lo - c.gstart, hi - c.gstart
        covered = np.zeros_like(mask)
        covered[a:b] = mask[a:b]
        self.bits[lo - self.ix.start : hi - self.ix.start] = mask[a:b]
        self.members.append((c, base, covered))
        if a == 0 and b == c.num_rows:
            return None
        rest = mask.copy()
        rest[a:b] = False
        return rest if rest.any() else None

    def allowed(self) -> int:
        return int(np.count_nonzero(self.bits))

    def refs(self, labels: np.ndarray) -> np.ndarray:
        """Flat row refs (into the search's ``used`` row space) of index labels (-1 stays -1)."""
        starts = np.array([c.gstart for c, _, _ in self.members], np.int64)
        bases = np.array([b for _, b, _ in self.members], np.int64)
        order = np.argsort(starts, kind="stable")
        starts, bases = starts[order], bases[order]
        pos = labels + self.ix.start
        which = np.clip(np.searchsorted(starts, pos, side="right") - 1, 0, len(starts) - 1)
        return np.where(labels >= 0, bases[which] + pos - starts[which], -1)


__all__ = ["GrowingIndexes", "InterimGroup", "InterimSettings", "PROPERTY", "interim_fields"]
