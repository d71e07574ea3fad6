"""The interim index of growing rows: an append-only HNSW whose rows are searchable as added.

A searcher adds the growing rows of a shard to it in the background as the WAL is applied,
so a search over growing data walks a graph instead of scanning every row; rows not yet
added are scanned exactly. HNSW was chosen by measurement over IVF-Flat with shared
centroids: on 100k clustered 128-d rows, HNSW M16/efC40-100 reaches recall@10 0.97-0.985 at
ef 64 in about 0.1 ms per query and takes rows at 10-28k/s in 100-row adds, while IVF-Flat
needed nprobe 256 of 4096 lists (0.4 ms) for 0.976.

Labels are positions counted from ``start`` (the first row the index holds). A search passes
the rows it may see as a bitmap; rows added after the caller read ``end`` lie past the
bitmap's end and are never returned. faiss reallocates the graph when rows are added, so adds
take the write side of a readers-writer lock and searches the read side.

COSINE is stored as inner product over normalised rows; the caller normalises queries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np

from indexer.exact import faiss_metric, normalized
from indexer.ranges import empty_knn, fix_missing
from indexer.spec import is_similarity


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds new readers back."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class InterimIndex:
    """HNSW over growing rows ``start, start + 1, ...`` of one shard and one vector field."""

    def __init__(self, dim: int, metric: str, start: int, m: int = 16, ef_construction: int = 64) -> None:
        self.metric = metric
        self.start = start
        self.dim = dim
        self._index = faiss.IndexHNSWFlat(dim, m, faiss_metric(metric))
        self._index.hnsw.efConstruction = ef_construction
        self._lock = ReadWriteLock()
        self._ntotal = 0

    @property
    def ntotal(self) -> int:
        return self._ntotal

    @property
    def end(self) -> int:
        """One past the last growing position the index holds."""
        return self.start + self._ntotal

    def add(self, vectors: np.ndarray) -> None:
        """Append rows (float32 (n, dim), not normalised): they take the next positions."""
        x = normalized(vectors) if self.metric == "COSINE" else np.ascontiguousarray(vectors, np.float32)
        if not len(x):
            return
        with self._lock.writing():
            self._index.add(x)
            self._ntotal = int(self._index.ntotal)

    def search(self, queries: np.ndarray, k: int, bits: np.ndarray, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among rows whose bit is set: ``bits`` is a bool mask over positions ``start, ...``
        (rows past its end are excluded). Queries are float32, already normalised for COSINE.
        Returns (distances, labels as positions relative to ``start``), -1 where fewer match."""
        sim = is_similarity(self.metric)
        k = max(k, 1)
        if not bits.any():
            return empty_knn(queries.shape[0], k, sim)
        packed = np.packbits(bits, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(packed), faiss.swig_ptr(packed))
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(ef, k))
        q = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock.reading():
            d, labels = self._index.search(q, k, params=params)
        return fix_missing(d, labels, sim)

    def __repr__(self) -> str:
        return f"InterimIndex({self.metric}, dim={self.dim}, start={self.start}, ntotal={self.ntotal})"


__all__ = ["InterimIndex", "ReadWriteLock"]
