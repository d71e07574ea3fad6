"""Exact HAMMING and JACCARD distances over packed binary vectors, vectorised with numpy.

faiss binary indexes only compute Hamming distances, and IndexBinaryIVF accepts no ID selector,
so JACCARD (everywhere), filtered BIN_IVF_FLAT search and BIN_IVF_FLAT range search run here:
popcounts use ``np.bitwise_count`` on 64-bit words when the code size allows.

JACCARD distance is ``1 - |a & b| / |a | b|``; two all-zero vectors are at distance 0.
"""

from __future__ import annotations

import threading

import faiss
import numpy as np

from indexer.ranges import RangeResult, select_range, topk

_CHUNK_BYTES = 1 << 24  # bound on the (queries x rows x code bytes) temporaries


def _words(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return a.view(np.uint64) if a.shape[-1] % 8 == 0 and a.shape[-1] else a


def _popcount(a: np.ndarray) -> np.ndarray:
    return np.bitwise_count(a).sum(axis=-1, dtype=np.int32)


def distance_matrix(queries: np.ndarray, codes: np.ndarray, metric: str) -> np.ndarray:
    """(nq, n) float32 HAMMING or JACCARD distances between packed uint8 rows."""
    q, x = _words(queries), _words(codes)
    nq, n = q.shape[0], x.shape[0]
    out = np.empty((nq, n), dtype=np.float32)
    step = max(1, _CHUNK_BYTES // max(1, n * codes.shape[1]))
    if metric == "JACCARD":
        q_bits, x_bits = _popcount(q), _popcount(x)
    for s in range(0, nq, step):
        qc = q[s : s + step, None, :]
        if metric == "HAMMING":
            out[s : s + step] = _popcount(qc ^ x[None])
        else:
            inter = _popcount(qc & x[None])
            union = q_bits[s : s + step, None] + x_bits[None] - inter
            with np.errstate(invalid="ignore", divide="ignore"):
                out[s : s + step] = np.where(union > 0, 1.0 - inter / union, 0.0)
    return out


def binary_knn(
    codes: np.ndarray, queries: np.ndarray, k: int, metric: str, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over `codes`, restricted to rows where `mask` is true."""
    rows = None
    if mask is not None:
        rows = np.flatnonzero(mask)
        codes = codes[rows]
    return topk(distance_matrix(queries, codes, metric), k, False, rows)


def binary_range(
    codes: np.ndarray,
    queries: np.ndarray,
    metric: str,
    radius: float,
    range_filter: float | None,
    limit: int | None,
    mask: np.ndarray | None = None,
) -> list[RangeResult]:
    """Exact range search over `codes` (Milvus rules), restricted to rows where `mask` is true."""
    rows = np.flatnonzero(mask) if mask is not None else np.arange(codes.shape[0], dtype=np.int64)
    if mask is not None:
        codes = codes[rows]
    dist = distance_matrix(queries, codes, metric)
    return [select_range(dist[i], rows, metric, radius, range_filter, limit) for i in range(len(queries))]


class BinaryIVFLists:
    """Numpy copy of an IndexBinaryIVF's inverted lists: search the probed lists exactly."""

    def __init__(self, index: faiss.IndexBinaryIVF) -> None:
        self.index = index
        self.quantizer = faiss.downcast_IndexBinary(index.quantizer)
        cs = index.code_size
        invlists = index.invlists
        self.codes = np.zeros((index.ntotal, cs), dtype=np.uint8)
        self.rows: list[np.ndarray] = []
        for lst in range(index.nlist):
            size = invlists.list_size(lst)
            if size == 0:
                self.rows.append(np.zeros(0, dtype=np.int64))
                continue
            ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size).astype(np.int64)
            codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * cs).reshape(size, cs)
            self.codes[ids] = codes
            self.rows.append(ids)

    def candidates(self, queries: np.ndarray, nprobe: int) -> list[np.ndarray]:
        """Row ids in the `nprobe` lists nearest each query."""
        nprobe = max(1, min(nprobe, len(self.rows)))
        if nprobe == len(self.rows):
            everything = np.arange(self.codes.shape[0], dtype=np.int64)
            return [everything] * len(queries)
        _, probes = self.quantizer.search(queries, nprobe)
        return [np.concatenate([self.rows[p] for p in row if p >= 0]) for row in probes]

    def knn(
        self, queries: np.ndarray, k: int, metric: str, nprobe: int, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        out_d = np.empty((len(queries), k), dtype=np.float32)
        out_i = np.empty((len(queries), k), dtype=np.int64)
        for i, rows in enumerate(self.candidates(queries, nprobe)):
            if mask is not None:
                rows = rows[mask[rows]]
            dist = distance_matrix(queries[i : i + 1], self.codes[rows], metric)
            out_d[i], out_i[i] = (a[0] for a in topk(dist, k, False, rows))
        return out_d, out_i

    def range(
        self,
        queries: np.ndarray,
        metric: str,
        radius: float,
        range_filter: float | None,
        limit: int | None,
        nprobe: int,
        mask: np.ndarray | None,
    ) -> list[RangeResult]:
        out = []
        for i, rows in enumerate(self.candidates(queries, nprobe)):
            if mask is not None:
                rows = rows[mask[rows]]
            dist = distance_matrix(queries[i : i + 1], self.codes[rows], metric)[0]
            out.append(select_range(dist, rows, metric, radius, range_filter, limit))
        return out


class LazyBinaryData:
    """Thread-safe lazy holders for the numpy views a binary VectorIndex needs."""

    def __init__(self, index) -> None:
        self._index = index
        self._lock = threading.RLock()
        self._codes: np.ndarray | None = None
        self._lists: BinaryIVFLists | None = None

    def codes(self) -> np.ndarray:
        if self._codes is None:
            with self._lock:
                if self._codes is None:
                    if isinstance(self._index, faiss.IndexBinaryIVF):
                        self._codes = self.lists().codes
                    elif self._index.ntotal:
                        self._codes = self._index.reconstruct_n(0, self._index.ntotal)
                    else:
                        self._codes = np.zeros((0, self._index.code_size), dtype=np.uint8)
        return self._codes

    def lists(self) -> BinaryIVFLists:
        if self._lists is None:
            lists = BinaryIVFLists(self._index)
            with self._lock:
                if self._lists is None:
                    self._lists = lists
        return self._lists
