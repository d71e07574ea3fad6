"""Handing growing rows over to sealed segments, without a gap, a double, or a slow window.

When the streams worker commits a shard's rows up to WAL offset L, a background thread reads
the rows in (sealed_upto, L] back from Delta as sealed containers (``prepare``) and loads any
index files already built for them. The tail thread swaps them in only when their indexes
are attached (or ``wait_seconds`` have passed, or the field has no index): until then the
growing rows, with their interim index, keep answering, so a fresh seal is never scanned by
brute force. At the swap the sealed rows take over the live bits of the same rows in growing
data (matched by ``_seq``), in one step on the tail thread, which is the only writer of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from schemas.catalog import CollectionInfo
from schemas.stored_rows import conform
from searcher.segment import SEGMENT_ORDER, Container, sealed_containers

log = logging.getLogger(__name__)


@dataclass
class PreparedSeal:
    shard: int
    upto: int  # last WAL offset the sealed rows cover
    containers: list[Container]
    since: float = field(default_factory=time.monotonic)
    last_check: float = field(default_factory=time.monotonic)

    def indexed(self, info: CollectionInfo, failed: Callable[[Container, str], bool]) -> bool:
        """Every indexed vector field has its index attached on every container, or its build
        ``failed`` (indexes on scalar fields are not FAISS files)."""
        vector_fields = [
            f.name for f in info.schema.vector_fields if f.name in info.indexes and f.dtype.has_index_file
        ]
        return all(f in c.indexes or failed(c, f) for c in self.containers for f in vector_fields)


def read_sealed(table: pa.Table | None, pk_name: str) -> list[Container]:
    """Sealed containers of rows read back from Delta (live bits are set at the swap)."""
    if table is None or table.num_rows == 0:
        return []
    n = table.num_rows
    table = table.append_column("__alive", pa.array(np.ones(n, bool)))
    return sealed_containers(table, pk_name)


def conform_stored(table: pa.Table, info: CollectionInfo) -> pa.Table:
    """Delta returns list<float> for fixed-size vectors, and older rows lack added fields.

    Sorted by segment, then WAL order: the order ``sealed_containers`` cuts the table in, so the
    rows (vectors included) are copied once."""
    target = info.schema.stored_arrow_schema()
    batches = [conform(b, target) for b in table.to_batches()]
    return pa.Table.from_batches(batches, schema=target).sort_by(SEGMENT_ORDER)


def seal_filter(shard: int, lo: int, upto: int) -> ds.Expression:
    return (ds.field("_shard") == shard) & (ds.field("_offset") > lo) & (ds.field("_offset") <= upto)


def loaded_filter(upto: dict[int, int]) -> ds.Expression:
    """The stored rows a load reads: each shard's up to its committed WAL offset ``upto[shard]``."""
    expr = None
    for s, off in upto.items():
        e = (ds.field("_shard") == s) & (ds.field("_offset") <= off)
        expr = e if expr is None else expr | e
    return expr if expr is not None else ds.scalar(False)


def take_over(sealed: list[Container], growing: list[Container], collection: str, shard: int) -> None:
    """Give each sealed row the live bit and death timestamp of the same row in ``growing``."""
    if growing:
        g_seqs = np.concatenate([c.seqs for c in growing])
        g_alive = np.concatenate([c.alive for c in growing])
        g_dead = np.concatenate([c.dead_ts for c in growing])
        order = np.argsort(g_seqs, kind="stable")
        g_seqs, g_alive, g_dead = g_seqs[order], g_alive[order], g_dead[order]
    else:
        g_seqs, g_alive, g_dead = np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int64)
    missing = 0
    for c in sealed:
        pos = np.minimum(np.searchsorted(g_seqs, c.seqs), max(len(g_seqs) - 1, 0))
        found = g_seqs[pos] == c.seqs if len(g_seqs) else np.zeros(c.num_rows, bool)
        missing += int(c.num_rows - np.count_nonzero(found))
        c.alive = np.where(found, g_alive[pos] if len(g_seqs) else False, False)
        c.dead_ts = np.where(found, g_dead[pos] if len(g_seqs) else 0, 0).astype(np.int64)
        c._alive_count = None
    if missing:
        log.error(
            "sealed rows not seen in growing data collection=%s shard=%s rows=%s", collection, shard, missing
        )


def remaining(growing: list[Container], upto: int, pk_name: str) -> list[Container]:
    """The growing containers' rows above WAL offset ``upto`` (a suffix of each container)."""
    kept = []
    for c in growing:
        keep = c.offsets > upto
        if keep.all():
            kept.append(c)
        elif keep.any():
            dropped = int(c.num_rows - np.count_nonzero(keep))
            kept.append(
                Container(
                    c.table.filter(pa.array(keep)),
                    pk_name,
                    False,
                    -1,
                    c.shard,
                    alive=c.alive[keep],
                    dead_ts=c.dead_ts[keep],
                    gstart=c.gstart + dropped,
                )
            )
    return kept


__all__ = ["PreparedSeal", "conform_stored", "read_sealed", "remaining", "seal_filter", "take_over"]
