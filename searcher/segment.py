"""A container of rows the searcher holds: a sealed segment, or a chunk of growing rows.

Every container keeps its rows sorted by ``_seq`` (WAL order), an ``alive`` bitmap (False
once a later write or a delete superseded the row), and, when sealed and indexed, the
FAISS index of each vector field. Row ``i`` of the container is label ``i`` of its index.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from indexer import SparseIndex, VectorIndex
from schemas.collection import CollectionSchema
from schemas.live import latest_alive
from schemas.vector_arrays import arrow_vectors
from searcher.scalar_index import SegmentPostings

ALIVE = np.iinfo(np.int64).max
SEGMENT_ORDER = [("_segment", "ascending"), ("_seq", "ascending")]  # a stored table's rows, as held


def normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    norms[norms == 0] = 1.0
    return x / norms


@dataclass
class Container:
    table: pa.Table  # data columns + system columns, sorted by _seq
    pk_name: str
    sealed: bool
    segment_id: int = -1
    shard: int = 0
    alive: np.ndarray = field(default=None)  # type: ignore[assignment]
    # growing rows only: the shard's growing position of row 0 (positions count every growing row
    # the searcher applied to the shard, in WAL order; interim indexes are labelled by them)
    gstart: int = -1
    # when each row stopped being its key's latest write (hybrid ts; ALIVE while it still is):
    # with ``_ts``, this answers "was the row live at timestamp S" for iterator snapshots
    dead_ts: np.ndarray = field(default=None)  # type: ignore[assignment]
    indexes: dict[str, tuple[int, VectorIndex]] = field(default_factory=dict)  # field -> (index_id, index)
    postings: SegmentPostings = field(default_factory=SegmentPostings)  # scalar indexes, sealed only
    _vectors: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict)
    # vector fields whose Arrow column was let go (``keep_vectors_in``): their field and the index
    # that gives the rows back
    _kept_in: dict[str, tuple[pa.Field, VectorIndex]] = field(default_factory=dict)
    _sparse: dict[tuple[str, float], SparseIndex] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _alive_count: tuple[np.ndarray, int] | None = None

    def __post_init__(self) -> None:
        if self.alive is None:
            self.alive = np.ones(self.table.num_rows, dtype=bool)
        if self.dead_ts is None:
            self.dead_ts = np.where(self.alive, ALIVE, 0).astype(np.int64)
        names = self.table.column_names
        self.ts: np.ndarray = (
            self.table.column("_ts").to_numpy() if "_ts" in names else np.zeros(self.num_rows, np.int64)
        )
        self.pks: pa.Array = self.table.column(self.pk_name).combine_chunks()
        self.ts_range = (int(self.ts.min()), int(self.ts.max())) if self.num_rows else (0, 0)
        self.seqs: np.ndarray = self.table.column("_seq").to_numpy()
        self.offsets: np.ndarray = self.table.column("_offset").to_numpy()
        self.max_offset = int(self.offsets.max()) if len(self.offsets) else -1
        # a sealed segment holds one partition; growing chunks may mix them
        parts = pc.unique(self.table.column("_partition")) if self.num_rows else pa.array([], pa.string())
        self.partition: str | None = parts[0].as_py() if self.sealed and len(parts) == 1 else None
        self.partition_names: frozenset[str | None] = frozenset(parts.to_pylist())
        self._pk_range = _int_range(self.pks)
        # integer keys also as numpy: gathering a top-k's keys is then one fancy index
        self._pk_np = self.pks.to_numpy() if self._pk_range is not None and not self.pks.null_count else None

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    @property
    def live_rows(self) -> int:
        return int(np.count_nonzero(self.alive))

    def count(self, mask: np.ndarray) -> int:
        """Rows set in ``mask``; the live bitmap's count is cached until the bitmap is replaced."""
        if mask is not self.alive:
            return int(np.count_nonzero(mask))
        cached = self._alive_count
        if cached is None or cached[0] is not mask:
            cached = self._alive_count = (mask, int(np.count_nonzero(mask)))
        return cached[1]

    def take_pks(self, rows: np.ndarray) -> pa.Array:
        if self._pk_np is not None:
            return pa.array(self._pk_np[rows])
        return self.pks.take(pa.array(rows))

    def has_column(self, name: str) -> bool:
        return name in self.table.column_names or name in self._kept_in

    def take_columns(self, names: list[str], rows: np.ndarray) -> pa.Table:
        """Columns ``names`` of rows ``rows``; vectors an index keeps come back from it."""
        table = self.table
        kept = [n for n in names if n in self._kept_in and n not in table.column_names]
        if not kept:
            return table.select(names).take(rows)
        plain = table.select([n for n in names if n not in kept]).take(rows)
        fields, columns = [], []
        for name in names:
            if name in kept:
                f, index = self._kept_in[name]
                x = index.reconstruct(np.asarray(rows, dtype=np.int64))
                fields.append(f)
                columns.append(pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), type=f.type))
            else:
                fields.append(plain.schema.field(name))
                columns.append(plain.column(name))
        return pa.Table.from_arrays(columns, schema=pa.schema(fields))

    def keep_vectors_in(self, name: str, index: VectorIndex) -> bool:
        """Let the Arrow column of vector field ``name`` go when ``index`` keeps every row's vector
        exactly (sealed containers; float vectors without nulls): one copy of the vectors, not two.
        True when the column went."""
        table = self.table
        if not self.sealed or name in self._kept_in or name not in table.column_names or self.num_rows == 0:
            return False
        col = table.column(name)
        ftype = col.type
        if col.null_count or not pa.types.is_fixed_size_list(ftype) or ftype.value_type != pa.float32():
            return False
        if index.ntotal != self.num_rows or not index.keep_rows():
            return False
        probe = np.unique(np.linspace(0, self.num_rows - 1, 64).astype(np.int64))
        stored = arrow_vectors(col.take(pa.array(probe)), "FLOAT_VECTOR", ftype.list_size)
        if not np.array_equal(index.reconstruct(probe), stored):  # not the rows as stored: keep them
            return False
        with self._lock:
            self._kept_in[name] = (table.schema.field(name), index)  # before the column goes
            self.table = table.drop_columns([name])
            self._vectors.pop((name, False), None)
        return True

    def vectors(self, schema: CollectionSchema, name: str, normalized: bool = False) -> np.ndarray:
        """The field's vectors as float32 (n, dim), or packed uint8 for binary; cached."""
        key = (name, normalized)
        cached = self._vectors.get(key)
        if cached is not None:
            return cached
        with self._lock:
            if key in self._vectors:
                return self._vectors[key]
            f = schema.field(name)
            assert f is not None
            table = self.table
            if name in self._kept_in and name not in table.column_names:  # an exact fallback
                x = self._kept_in[name][1].reconstruct(np.arange(self.num_rows))
            else:
                x = arrow_vectors(table.column(name), f.dtype.name, int(f.dim or 0))
            if normalized:
                x = normalize_rows(x)
            self._vectors[key] = x
            return x

    def sparse_index(self, name: str, drop_ratio_build: float = 0.0) -> SparseIndex:
        """The inverted index of a sparse field's rows; built on first use, then cached."""
        key = (name, drop_ratio_build)
        cached = self._sparse.get(key)
        if cached is not None:
            return cached
        with self._lock:
            if key not in self._sparse:
                self._sparse[key] = SparseIndex(self.table.column(name), self.num_rows, drop_ratio_build)
            return self._sparse[key]

    def killed(self, keys: pa.Array, ts: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
        """``(alive, dead_ts)`` after rows whose key is in ``keys`` are superseded at ``ts``, or None.

        New arrays (copy-on-write), so searches holding the old ones stay consistent.
        """
        if not self.alive.any() or self._disjoint(keys):
            return None
        return self._kill(pc.is_in(self.pks, value_set=keys).to_numpy(zero_copy_only=False), ts)

    def killed_partition(self, partition: str, ts: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``(alive, dead_ts)`` after every live row of ``partition`` is gone at ``ts``, or None."""
        return self._kill(
            pc.equal(self.table.column("_partition"), partition).to_numpy(zero_copy_only=False), ts
        )

    def _kill(self, hit: np.ndarray, ts: int) -> tuple[np.ndarray, np.ndarray] | None:
        hit &= self.alive
        if not hit.any():
            return None
        alive = self.alive.copy()
        alive[hit] = False
        dead = self.dead_ts.copy()
        dead[hit] = ts
        return alive, dead

    def unexpired(self, mask: np.ndarray, cutoff_ts: int) -> np.ndarray:
        """``mask`` without the rows written before ``cutoff_ts`` (collection TTL)."""
        lo, hi = self.ts_range
        if lo >= cutoff_ts:
            return mask
        if hi < cutoff_ts:
            return np.zeros_like(mask)
        return mask & (self.ts >= cutoff_ts)

    def live_at(self, ts: int) -> np.ndarray:
        """Rows that were their key's latest write at hybrid timestamp ``ts`` (an MVCC snapshot)."""
        return (self.ts <= ts) & (self.dead_ts > ts)

    def _disjoint(self, keys: pa.Array) -> bool:
        if self._pk_range is None or not pa.types.is_integer(keys.type) or len(keys) == 0:
            return False
        mm = pc.min_max(keys)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        return hi < self._pk_range[0] or lo > self._pk_range[1]


def sealed_containers(table: pa.Table, pk_name: str) -> list[Container]:
    """One sealed container per ``_segment`` of a stored table; its ``__alive`` (and optional
    ``__dead``) columns become each container's live bitmap and death timestamps."""
    out: list[Container] = []
    if table.num_rows == 0:
        return out
    segs = table.column("_segment").to_numpy()
    seqs = table.column("_seq").to_numpy()
    step = np.diff(segs)
    if not np.all((step > 0) | ((step == 0) & (np.diff(seqs) >= 0))):  # conform_stored sorts already
        table = table.sort_by(SEGMENT_ORDER)
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
        shard = int(part.column("_shard")[0].as_py())
        out.append(Container(part, pk_name, True, int(segs[start]), shard, alive=alive, dead_ts=dead))
    return out


def merge_growing(chunks: list[Container], pk_name: str) -> Container:
    """Consecutive growing containers of one shard as one."""
    if len(chunks) == 1:
        return chunks[0]
    table = pa.concat_tables([c.table for c in chunks], promote_options="default").combine_chunks()
    alive = np.concatenate([c.alive for c in chunks])
    dead = np.concatenate([c.dead_ts for c in chunks])
    first = chunks[0]
    return Container(table, pk_name, False, -1, first.shard, alive=alive, dead_ts=dead, gstart=first.gstart)


def _int_range(pks: pa.Array) -> tuple[int, int] | None:
    if not pa.types.is_integer(pks.type) or len(pks) == 0:
        return None
    mm = pc.min_max(pks)
    return int(mm["min"].as_py()), int(mm["max"].as_py())


__all__ = ["Container", "latest_alive", "normalize_rows", "sealed_containers"]
