"""Compaction of a collection's Delta tables: dead rows out, small segments merged, space freed.

A row is dead when a later write of its key superseded it, a tombstone deleted it, its partition
was dropped, or the collection's TTL expired it. ``compact`` picks the sealed segments worth
rewriting (``plan``), writes their live rows as new segments and removes the old ones in ONE
Delta commit (``SegmentStore.replace_segments``): a crash leaves either the old files live or
the new ones, never both, never neither. Rows keep their ``_shard``, ``_offset``, ``_seq`` and
``_ts``, so searchers match them with the rows they hold, and the shards' application
transactions (the streams worker's exactly-once positions) are untouched.

Only then are tombstones that no longer hide any stored row removed from the deletes table (a
second commit: a crash between the two leaves harmless extra tombstones, never a deleted row
back). Readers open the deletes table before the rows table, so they never pair the new
tombstones with the old rows. Vacuum then deletes the removed files after the retention.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from indexer.tombstones import purge_tombstones
from schemas.catalog import CollectionInfo
from schemas.collection import PARTITION_COLUMN
from schemas.live import stored_alive
from schemas.segments import compacted_segment_id
from schemas.timestamps import compose
from walvus.exceptions import CommitConflict, StorageError
from walvus.storage import DELETES, ROWS, SegmentStore, TableSnapshot

log = logging.getLogger(__name__)
HISTORY_LOOKBACK = 50  # recent commits searched for a compaction already committed
SYSTEM = ["_shard", "_offset", "_seq", "_ts", "_segment", PARTITION_COLUMN]


@dataclass(frozen=True)
class CompactionPolicy:
    """When a collection is compacted automatically, and how big the segments it writes are."""

    dead_fraction: float = 0.2
    small_segment_rows: int = 65_536
    small_segments: int = 8
    max_segment_rows: int = 1_000_000
    retention_seconds: float = 7 * 24 * 3600.0
    attempts: int = 8


@dataclass(frozen=True)
class SegmentStats:
    segment_id: int
    shard: int
    partition: str
    rows: int
    dead: int
    max_offset: int


@dataclass(frozen=True)
class Merge:
    """Segments of one (shard, partition) rewritten together."""

    shard: int
    partition: str
    sources: tuple[int, ...]


@dataclass
class CompactionResult:
    removed: list[int] = field(default_factory=list)
    added: list[list[int]] = field(default_factory=list)  # [segment_id, shard, rows]
    upto: dict[str, int] = field(default_factory=dict)  # shard -> highest offset of removed rows
    plans: list[list] = field(default_factory=list)  # [[sources...], target]
    table_version: int = -1
    purged_rows: int = 0
    purged_tombstones: int = 0
    freed_files: int = 0


def dead_rows(rows: pa.Table, tombs: pa.Table | None, pk: str, ttl_seconds: int, now_ms: int) -> np.ndarray:
    """True for each stored row that no reader may see any more."""
    dead = ~stored_alive(rows, tombs, pk)
    if ttl_seconds:
        dead |= rows.column("_ts").to_numpy() < compose(now_ms - ttl_seconds * 1000)
    return dead


def segment_stats(rows: pa.Table, dead: np.ndarray) -> list[SegmentStats]:
    if rows.num_rows == 0:
        return []
    t = pa.table(
        {
            "seg": rows.column("_segment"),
            "shard": rows.column("_shard"),
            "part": rows.column(PARTITION_COLUMN),
            "off": rows.column("_offset"),
            "dead": pa.array(dead.astype(np.int64)),
        }
    )
    g = t.group_by("seg").aggregate(
        [("shard", "min"), ("part", "min"), ("off", "max"), ("dead", "sum"), ("dead", "count")]
    )
    return [
        SegmentStats(int(s), int(sh), str(p), int(n), int(d), int(o))
        for s, sh, p, o, d, n in zip(
            g.column("seg").to_pylist(),
            g.column("shard_min").to_pylist(),
            g.column("part_min").to_pylist(),
            g.column("off_max").to_pylist(),
            g.column("dead_sum").to_pylist(),
            g.column("dead_count").to_pylist(),
            strict=True,
        )
    ]


def plan(stats: list[SegmentStats], policy: CompactionPolicy, force: bool) -> list[Merge]:
    """Which segments to rewrite. Per (shard, partition), the candidates are the segments holding
    dead rows and the small ones. Forced (a client's compact()): every group with a dead row or
    two small segments. By policy: all groups once the collection's dead fraction reaches the
    threshold, else the groups with at least ``small_segments`` small segments."""
    total = sum(s.rows for s in stats)
    dead = sum(s.dead for s in stats)
    dirty = total > 0 and dead / total >= policy.dead_fraction and dead > 0
    groups: dict[tuple[int, str], list[SegmentStats]] = {}
    for s in stats:
        groups.setdefault((s.shard, s.partition), []).append(s)
    merges = []
    for (shard, part), segs in sorted(groups.items()):
        small = [s for s in segs if s.rows - s.dead < policy.small_segment_rows]
        with_dead = [s for s in segs if s.dead]
        chosen = {s.segment_id for s in small} | {s.segment_id for s in with_dead}
        if force or dirty:
            due = bool(with_dead) or len(small) >= 2
        else:
            due = len(small) >= policy.small_segments
        if due and chosen:
            merges.append(Merge(shard, part, tuple(sorted(chosen))))
    return merges


def within(upto: dict[int, int]) -> ds.Expression:
    """Rows or tombstones at or below each shard's offset."""
    expr = ds.scalar(False)
    for s, off in upto.items():
        expr = expr | ((ds.field("_shard") == s) & (ds.field("_offset") <= off))
    return expr


def compact(
    store: SegmentStore,
    info: CollectionInfo,
    compaction_id: int,
    policy: CompactionPolicy,
    *,
    force: bool,
    now_ms: int | None = None,
    target_bytes: int = 0,
    vacuum: bool = True,
) -> CompactionResult:
    """Compact the collection's tables once (see the module doc). Concurrent appends are fine; a
    concurrent rewrite makes this start over from a fresh snapshot (``policy.attempts`` times).
    ``target_bytes`` (a client's target size) bounds the new segments' stored size, by the table's
    stored bytes per row, below ``policy.max_segment_rows``. ``vacuum=False`` (a snapshot pins the
    tables) leaves the removed files on disk."""
    cid = info.collection_id
    result = committed_result(store, cid, compaction_id) or CompactionResult()
    for attempt in range(policy.attempts if result.table_version < 0 else 0):
        try:
            result = _rewrite_rows(store, info, compaction_id, policy, force, now_ms, target_bytes)
            break
        except CommitConflict as exc:
            if attempt + 1 >= policy.attempts:
                raise
            log.info(
                "compaction conflict, retrying collection=%s attempt=%s error=%s", info.name, attempt + 1, exc
            )
            time.sleep(0.05 * 2**attempt)
    for attempt in range(policy.attempts):
        try:
            result.purged_tombstones = purge_tombstones(store, info, compaction_id)
            break
        except CommitConflict:
            if attempt + 1 >= policy.attempts:
                log.warning("tombstone purge gave up after conflicts collection=%s", info.name)
            time.sleep(0.05 * 2**attempt)
    if vacuum and (result.removed or result.purged_tombstones):
        # only after a rewrite: each vacuum is two Delta commits, which made the next policy check
        # see a changed table and compact (and vacuum) again, forever (soak: 124 of 135 versions).
        # Files an earlier compaction removed go at a later one once the retention has passed.
        result.freed_files = len(store.vacuum(cid, ROWS, policy.retention_seconds))
        result.freed_files += len(store.vacuum(cid, DELETES, policy.retention_seconds))
    # the removed segments' index files are the collector's (walvus.gc): it deletes them a grace
    # period after it first finds their segment gone, for searchers that listed it just before
    return result


def committed_result(store: SegmentStore, collection_id: int, compaction_id: int) -> CompactionResult | None:
    """The outcome of this compaction when it was committed already (a compactor killed after its
    commit, before it announced it: the restarted one announces it again), from the commit's
    metadata among the table's recent commits."""
    dt = store.open(collection_id, ROWS)
    if dt is None:
        return None
    for entry in dt.history(HISTORY_LOOKBACK):
        if entry.get("compaction_id") == str(compaction_id) and "compaction" in entry:
            d = json.loads(entry["compaction"])
            return CompactionResult(
                removed=d["removed"],
                added=d["added"],
                upto=d["upto"],
                plans=d["plans"],
                table_version=int(entry["version"]),
                purged_rows=d["purged_rows"],
            )
    return None


def _positions(rows_dt: TableSnapshot, dels_dt: TableSnapshot | None, info: CollectionInfo) -> dict[int, int]:
    """Per shard, the offset up to which segments may be rewritten.

    A searcher loads a shard's rows up to the offset both tables hold and tails the WAL above it;
    a rewritten segment that straddled that offset would load as a part of itself, which its index
    does not fit. A shard that never committed a tombstone loads nothing (its WAL is replayed),
    so all its segments may go."""
    upto = {}
    for s in range(info.shards_num):
        r = rows_dt.committed_offset(s)
        d = dels_dt.committed_offset(s) if dels_dt is not None else None
        r = -1 if r is None else r
        upto[s] = r if d is None else min(r, d)
    return upto


def _rewrite_rows(
    store: SegmentStore,
    info: CollectionInfo,
    compaction_id: int,
    policy: CompactionPolicy,
    force: bool,
    now_ms: int | None,
    target_bytes: int = 0,
) -> CompactionResult:
    cid, pk = info.collection_id, info.schema.primary.name
    dels_dt = store.open(cid, DELETES)  # first: every tombstone it holds targets rows already stored
    rows_dt = store.open(cid, ROWS)
    result = CompactionResult()
    if rows_dt is None:
        return result
    upto = _positions(rows_dt, dels_dt, info)
    rows = rows_dt.dataset().to_table(columns=[pk, *SYSTEM])
    tombs = dels_dt.dataset().to_table() if dels_dt is not None else None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    # segments with rows a searcher may not have loaded yet wait for the next round
    beyond = (
        set(pc.unique(rows.filter(~within(upto)).column("_segment")).to_pylist()) if rows.num_rows else set()
    )
    rows = rows.filter(within(upto))
    dead = dead_rows(rows, tombs, pk, info.ttl_seconds, now)
    stats = [s for s in segment_stats(rows, dead) if s.segment_id not in beyond]
    merges = plan(stats, policy, force)
    if not merges:
        return result
    sources = sorted({s for m in merges for s in m.sources})
    src_mask = pc.is_in(rows.column("_segment"), value_set=pa.array(sources, pa.int64()))
    src_rows = rows.filter(src_mask)
    kept = src_rows.filter(pa.array(~dead[src_mask.to_numpy(zero_copy_only=False)]))
    purged = int(src_rows.num_rows - kept.num_rows)
    by_id = {s.segment_id: s for s in stats}
    max_rows = policy.max_segment_rows
    if target_bytes:
        max_rows = max(1, min(max_rows, int(target_bytes / _stored_bytes_per_row(rows_dt))))
    layout, added, plans = _layout(merges, by_id, info, rows_dt.version, max_rows)
    new_data = _rewritten(rows_dt.dataset(), sources, layout, kept)
    before = {s: rows_dt.committed_offset(s) for s in range(info.shards_num)}
    upto_removed: dict[str, int] = {}
    for s in sources:
        st = by_id[s]
        upto_removed[str(st.shard)] = max(upto_removed.get(str(st.shard), -1), st.max_offset)
    log.info(
        "compaction writing collection=%s compaction_id=%s segments=%s rows=%s read_version=%s",
        info.name,
        compaction_id,
        len(sources),
        kept.num_rows,
        rows_dt.version,
    )
    version = store.replace_segments(
        cid,
        ROWS,
        rows_dt,
        new_data,
        sources + [a[0] for a in added],
        metadata={
            "walvus_operation": "compaction",
            "compaction_id": compaction_id,
            "removed_segments": len(sources),
            "added_segments": len(added),
            "purged_rows": purged,
            "compaction": json.dumps(
                {
                    "removed": sources,
                    "added": added,
                    "upto": upto_removed,
                    "plans": plans,
                    "purged_rows": purged,
                }
            ),
        },
        partition_by=[PARTITION_COLUMN],
    )
    after = store.open(cid, ROWS, version)
    assert after is not None
    for s, v in before.items():  # the streams worker's exactly-once positions must survive
        after_offset = after.committed_offset(s)
        if v is not None and (after_offset is None or after_offset < v):
            raise StorageError(f"compaction of collection {info.name} lost shard {s}'s committed offset {v}")
    result.removed = sources
    result.added = added
    result.plans = plans
    result.table_version = version
    result.purged_rows = purged
    result.upto = upto_removed
    log.info(
        "compacted collection=%s compaction_id=%s removed_segments=%s added_segments=%s purged_rows=%s version=%s",
        info.name,
        compaction_id,
        len(sources),
        len(added),
        result.purged_rows,
        version,
    )
    return result


def _stored_bytes_per_row(dt: TableSnapshot) -> float:
    """Parquet bytes per row of the table's live files (their sizes and row counts)."""
    adds = dt.files()
    rows = pc.sum(adds.column("num_records")).as_py() or 0
    size = pc.sum(adds.column("size_bytes")).as_py() or 0
    return max(1.0, size / rows) if rows else 1.0


def _layout(
    merges: list[Merge], stats: dict[int, SegmentStats], info: CollectionInfo, version: int, max_rows: int
) -> tuple[dict[int, int], list[list[int]], list[list]]:
    """Which new segment each source segment's live rows go to: per merge, whole source segments
    in order, a new segment started before one would pass ``max_rows``. Returns (source -> new id,
    ``[new id, shard, rows]``, ``[[sources], first target]``)."""
    layout: dict[int, int] = {}
    added: list[list[int]] = []
    plans: list[list] = []
    serial: dict[tuple[int, int], int] = {}
    for m in merges:
        pid = int(info.partitions.get(m.partition, 0)) if info.partitions else 0
        targets: list[int] = []
        for src in m.sources:
            live = stats[src].rows - stats[src].dead
            if live == 0:
                continue
            if not targets or added[-1][2] + live > max_rows:
                n = serial.get((m.shard, pid), 0)
                serial[(m.shard, pid)] = n + 1
                targets.append(compacted_segment_id(m.shard, pid, version, n))
                added.append([targets[-1], m.shard, 0])
            layout[src] = targets[-1]
            added[-1][2] += live
        plans.append([list(m.sources), targets[0] if targets else 0])
    return layout, added, plans


def _rewritten(
    dataset: ds.Dataset, sources: list[int], layout: dict[int, int], kept: pa.Table
) -> pa.RecordBatchReader:
    """The live rows of the source segments under their new segment ids, one source segment in
    memory at a time (a segment is one shard's: its ``_seq`` values name its rows)."""
    segs = kept.column("_segment").to_numpy()
    seqs = kept.column("_seq").to_numpy()
    order = np.argsort(segs, kind="stable")
    segs, seqs = segs[order], seqs[order]
    col = dataset.schema.get_field_index("_segment")

    def batches() -> Iterator[pa.RecordBatch]:
        for src in sources:
            lo, hi = np.searchsorted(segs, src, "left"), np.searchsorted(segs, src, "right")
            if src not in layout or lo == hi:
                continue
            t = dataset.to_table(filter=ds.field("_segment") == src)
            t = t.filter(pa.array(np.isin(t.column("_seq").to_numpy(), seqs[lo:hi])))
            t = t.set_column(col, "_segment", pa.array(np.full(t.num_rows, layout[src], np.int64)))
            yield from t.to_batches()

    return pa.RecordBatchReader.from_batches(dataset.schema, batches())


__all__ = [
    "CompactionPolicy",
    "CompactionResult",
    "Merge",
    "compact",
    "dead_rows",
    "plan",
]
