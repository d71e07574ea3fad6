"""VectorIndex: one faiss index per sealed segment, with Milvus search semantics.

Labels are row positions within the segment (-1 for none); distances follow `indexer.ranges`.
A filter of live rows (`allowed`, a bool mask or a reusable `RowFilter`) becomes a faiss
IDSelectorBitmap passed through SearchParameters, so disallowed rows are never returned.

Search params (Milvus names): ``nprobe`` (IVF types, default 8), ``ef`` (HNSW; default k, raised
to k when smaller; range search defaults to max(64, limit)), ``reorder_k`` / ``refine_k`` (SCANN,
default k: candidates re-ranked exactly). When a filter leaves few rows
(at most max(2048, 5% of the segment)) HNSW searches its flat storage exactly instead of the
graph, IVF types probe every list and SCANN re-ranks up to 2048 allowed rows exactly, so sparse
filters still return the true neighbours (IVF_SQ8 / IVF_PQ: up to their quantisation error).

Range search uses faiss range_search where it is exact or approximate-but-sound (FLAT, IVF_FLAT,
IVF_SQ8, IVF_PQ, HNSW, BIN_FLAT/HAMMING); SCANN (fast-scan PQ) widens a k-NN search until the
k-th result leaves the radius; binary IVF and JACCARD run exactly in numpy over the probed rows.

GPU_* indexes are stored as their CPU equivalents (see `indexer.gpu`). `load(..., gpu_search="auto")`
also puts a copy on the GPU when one is present, and unfiltered k-NN searches (k <= 2048) run
there; everything else, and every search on a CPU-only machine, uses the stored CPU copy
(GPU_CAGRA as HNSW, the CPU fallback Milvus allows for CAGRA).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.binary import LazyBinaryData, binary_knn, binary_range
from indexer.build import build_binary_index, build_float_index
from indexer.exact import as_queries, normalized
from indexer.gpu import CAGRA_SEARCH_PARAMS, GPU_MAX_K, GpuSearchIndex, cagra_search_params, place_for_search
from indexer.ranges import (
    RangeResult,
    check_k,
    check_limit,
    check_range,
    empty_knn,
    fix_missing,
    in_range,
    select_range,
    split_faiss_range,
)
from schemas.index_spec import IndexSpec, IndexSpecError, search_int

DEFAULT_NPROBE = 8
DEFAULT_RANGE_EF = 64
SPARSE_FILTER_ROWS = 2048
SPARSE_FILTER_FRACTION = 0.05
RANGE_KNN_START = 128
_KEEPS_ROWS = ("FLAT", "IVF_FLAT", "HNSW")  # index types whose codes are the float vectors as added
_MMAP_FLAG = getattr(faiss, "IO_FLAG_MMAP_IFC", None) or faiss.IO_FLAG_MMAP
log = logging.getLogger(__name__)


class RowFilter:
    """A bitmap of live rows, packed once for faiss; build one per segment state and reuse it."""

    __slots__ = ("mask", "count", "packed", "_selector")

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = np.ascontiguousarray(mask, dtype=bool)
        if self.mask.ndim != 1:
            raise IndexSpecError(f"allowed must be a 1-D bool mask, got shape {self.mask.shape}")
        self.count = int(np.count_nonzero(self.mask))
        self.packed = np.packbits(self.mask, bitorder="little")
        self._selector = None

    @property
    def selector(self) -> faiss.IDSelectorBitmap:
        """faiss selector over `packed` (which it references; this object keeps it alive)."""
        if self._selector is None:
            self._selector = faiss.IDSelectorBitmap(len(self.packed), faiss.swig_ptr(self.packed))
        return self._selector

    def sparse(self) -> bool:
        return self.count <= max(SPARSE_FILTER_ROWS, SPARSE_FILTER_FRACTION * len(self.mask))


def _classify(index) -> str:
    if isinstance(index, faiss.IndexBinaryIVF):
        return "bivf"
    if isinstance(index, faiss.IndexBinary):
        return "bflat"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexRefine):
        return "refine"
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf = faiss.downcast_index(ivf)
        return "fastscan" if isinstance(ivf, faiss.IndexIVFFastScan) else "ivf"
    return "flat"


class VectorIndex:
    """An immutable, thread-safe (for searches) vector index over one segment's rows."""

    def __init__(
        self, spec: IndexSpec, index: Any, notes: tuple[str, ...] = (), gpu: GpuSearchIndex | None = None
    ) -> None:
        self.spec = spec
        self.gpu = gpu  # a GPU copy for unfiltered k-NN, or None
        self.notes = tuple(notes)
        self._index = index
        self._kind = _classify(index)
        self._binary = self._kind in ("bivf", "bflat")
        if self._binary != spec.is_binary:
            raise IndexSpecError(f"index type {spec.index_type}: file holds a {type(index).__name__}")
        self._sim = spec.similarity
        self._width = index.code_size if self._binary else index.d
        ivf = faiss.try_extract_index_ivf(index) if self._kind in ("ivf", "fastscan", "refine") else None
        self._ivf = ivf
        self.nlist = index.nlist if self._kind == "bivf" else (ivf.nlist if ivf is not None else 0)
        self._storage = faiss.downcast_index(index.storage) if self._kind == "hnsw" else None
        # COSINE over a quantised index is stored as L2 over normalised rows: cos = 1 - l2 / 2
        self._cos_l2 = spec.metric == "COSINE" and not self._binary and index.metric_type == faiss.METRIC_L2
        self._bin = LazyBinaryData(index) if self._binary else None
        self.mapped = False  # codes mapped from the index file (``load(mmap=True)``)

    # ---- construction / persistence -------------------------------------------------------
    @classmethod
    def build(
        cls,
        spec: IndexSpec,
        vectors: np.ndarray,
        progress: Callable[[int, int], None] | None = None,
    ) -> VectorIndex:
        """Build over float32 (n, dim) or packed uint8 (n, dim / 8) rows; row i gets label i."""
        if spec.is_binary:
            x = np.ascontiguousarray(vectors, dtype=np.uint8)
            width = spec.dim // 8 if spec.dim else (x.shape[1] if x.ndim == 2 else 0)
        else:
            x = np.ascontiguousarray(vectors, dtype=np.float32)
            width = spec.dim or (x.shape[1] if x.ndim == 2 else 0)
        if x.ndim != 2 or x.shape[1] != width or width == 0:
            raise IndexSpecError(
                f"index type {spec.index_type}: vectors of shape {x.shape} do not match dim={spec.dim}"
            )
        if spec.is_binary:
            index, notes = build_binary_index(spec, x, progress)
        else:
            if spec.metric == "COSINE":
                x = normalized(x)
            index, notes = build_float_index(spec, x, progress)
        return cls(spec, index, tuple(notes))

    def save(self, path: Path | str) -> None:
        """Write the faiss index to `path`."""
        if self._binary:
            faiss.write_index_binary(self._index, str(path))
        else:
            faiss.write_index(self._index, str(path))

    @classmethod
    def load(
        cls,
        path: Path | str,
        spec: IndexSpec,
        mmap: bool = False,
        gpu_search: str = "off",
        gpu_module: Any = faiss,
    ) -> VectorIndex:
        """Read an index written by `save`; with mmap the file's codes are mapped, not copied.

        `gpu_search` "auto" also copies a GPU_* index to the GPU when `gpu_module` (faiss) sees one.
        """
        flags = _MMAP_FLAG if mmap else 0
        if spec.is_binary:
            index = faiss.read_index_binary(str(path), flags)
        else:
            index = faiss.read_index(str(path), flags)
        gpu = None if spec.is_binary else place_for_search(spec, index, gpu_search, gpu_module)
        loaded = cls(spec, index, gpu=gpu)
        loaded.mapped = bool(mmap)
        return loaded

    # ---- properties ---------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def index_type(self) -> str:
        return self.spec.index_type

    @property
    def faiss_index(self) -> Any:
        return self._index

    def keep_rows(self) -> bool:
        """Make ``reconstruct`` available when this index keeps every row's float vector exactly
        (FLAT, IVF_FLAT and HNSW over L2 or IP, on the CPU, not mapped from its file); False otherwise.

        IVF_FLAT gets a row -> list position map (8 bytes a row)."""
        exact = self.spec.index_type in _KEEPS_ROWS and self.spec.metric != "COSINE"
        if not exact or self._binary or self.gpu is not None or self.mapped:
            return False
        if self._ivf is not None and self._kind == "ivf":
            self._ivf.make_direct_map()
        elif self._kind not in ("flat", "hnsw"):
            return False
        return True

    def reconstruct(self, rows: np.ndarray) -> np.ndarray:
        """The float32 vectors of rows (labels) ``rows``, as added; after ``keep_rows`` returned True."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros((0, self._width), np.float32)
        return self._index.reconstruct_batch(rows)

    # ---- helpers ------------------------------------------------------------------------
    def _queries(self, queries) -> np.ndarray:
        q = as_queries(queries, self._binary, self._width)
        return normalized(q) if self.spec.metric == "COSINE" else q

    def _filter(self, allowed) -> RowFilter | None:
        if allowed is None:
            return None
        filt = allowed if isinstance(allowed, RowFilter) else RowFilter(allowed)
        if len(filt.mask) != self.ntotal:
            raise IndexSpecError(f"allowed has {len(filt.mask)} rows, the segment has {self.ntotal}")
        return None if filt.count == self.ntotal else filt

    def _nprobe(self, params, filt: RowFilter | None) -> int:
        nprobe = search_int(params, ("nprobe",), DEFAULT_NPROBE)
        if filt is not None and filt.sparse():
            nprobe = self.nlist
        return max(1, min(nprobe, self.nlist))

    def _float_params(self, params, k: int, filt: RowFilter | None, range_ef: bool = False):
        """(index to query, SearchParameters or None, objects to keep alive)."""
        sel = filt.selector if filt is not None else None
        kind = self._kind
        if kind == "hnsw":
            if filt is not None and filt.sparse():
                return self._storage, faiss.SearchParameters(sel=sel), (sel,)
            ef = search_int(params, ("ef", "itopk_size"), max(k, DEFAULT_RANGE_EF) if range_ef else k)
            sp = faiss.SearchParametersHNSW(efSearch=max(ef, k))
        elif kind in ("ivf", "fastscan"):
            sp = faiss.SearchParametersIVF(nprobe=self._nprobe(params, filt))
        elif kind == "refine":
            reorder_k = search_int(params, ("reorder_k", "refine_k"), k)
            if filt is not None and filt.sparse():  # re-rank every allowed row (up to 2048) exactly
                reorder_k = max(reorder_k, min(filt.count, SPARSE_FILTER_ROWS))
            base = faiss.SearchParametersIVF(nprobe=self._nprobe(params, filt))
            if sel is not None:
                base.sel = sel
            sp = faiss.IndexRefineSearchParameters(k_factor=max(1.0, reorder_k / k), base_index_params=base)
            return self._index, sp, (sel, base)
        else:
            sp = faiss.SearchParameters() if sel is not None else None
        if sel is not None:
            sp.sel = sel
        return self._index, sp, (sel,)

    # ---- k-NN search --------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        params: Mapping[str, Any] | None = None,
        allowed: np.ndarray | RowFilter | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: (distances float32 (nq, k), labels int64 (nq, k)), best first."""
        k = check_k(k)
        q = self._queries(queries)
        filt = self._filter(allowed)
        if self.ntotal == 0 or q.shape[0] == 0 or (filt is not None and filt.count == 0):
            return empty_knn(q.shape[0], k, self._sim)
        if self._binary:
            return self._search_binary(q, k, params, filt)
        return self._float_knn(q, k, params, filt)

    @property
    def device(self) -> str:
        """Where unfiltered k-NN searches run: "gpu" or "cpu"."""
        return "cpu" if self.gpu is None else "gpu"

    def _float_knn(self, q, k, params, filt) -> tuple[np.ndarray, np.ndarray]:
        if self.spec.index_type == "GPU_CAGRA":
            cagra_search_params(params, k)  # validated wherever the search runs
        if self.gpu is not None and filt is None and k <= GPU_MAX_K:
            nprobe = self._nprobe(params, None) if self.nlist else 0
            d, labels = self.gpu.search(q, k, params, nprobe)
        else:
            if self._kind == "hnsw" and self.spec.index_type == "GPU_CAGRA" and params:
                unused = [p for p in CAGRA_SEARCH_PARAMS[1:] if p in params]
                if unused:
                    log.debug("cagra searched as hnsw on cpu: unused params=%s", ",".join(unused))
            index, sp, _alive = self._float_params(params, k, filt)
            d, labels = index.search(q, k, params=sp)
        if self._cos_l2:
            d = 1.0 - d / 2.0
        return fix_missing(d, labels, self._sim)

    def _search_binary(self, q, k, params, filt):
        metric = self.spec.metric
        mask = filt.mask if filt is not None else None
        if self._kind == "bflat":
            if metric == "JACCARD":
                return binary_knn(self._bin.codes(), q, k, metric, mask)
            sp = faiss.SearchParameters(sel=filt.selector) if filt is not None else None
            d, labels = self._index.search(q, k, params=sp)
            return fix_missing(d, labels, False)
        nprobe = self._nprobe(params, filt)
        if metric == "HAMMING" and filt is None:
            d, labels = self._index.search(q, k, params=faiss.SearchParametersIVF(nprobe=nprobe))
            return fix_missing(d, labels, False)
        return self._bin.lists().knn(q, k, metric, nprobe, mask)

    # ---- range search -------------------------------------------------------------------
    def range_search(
        self,
        queries: np.ndarray,
        radius: float,
        range_filter: float | None = None,
        params: Mapping[str, Any] | None = None,
        allowed: np.ndarray | RowFilter | None = None,
        *,
        limit: int | None = None,
    ) -> list[RangeResult]:
        """Per query (distances, labels) inside the Milvus range, best first, at most `limit`."""
        metric = self.spec.metric
        radius, range_filter = check_range(metric, radius, range_filter)
        limit = check_limit(limit)
        q = self._queries(queries)
        filt = self._filter(allowed)
        if self.ntotal == 0 or (filt is not None and filt.count == 0):
            return [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(q.shape[0])]
        if self._binary:
            return self._range_binary(q, radius, range_filter, params, filt, limit)
        if self._kind in ("fastscan", "refine"):
            return self._range_by_knn(q, radius, range_filter, params, filt, limit)
        index, sp, _alive = self._float_params(params, limit or 1, filt, range_ef=True)
        if self._cos_l2:  # cos > r  <=>  l2 < 2 - 2r; widen by an ulp, the exact rule is applied below
            lims, d, labels = index.range_search(
                q, float(np.nextafter(np.float32(2.0 - 2.0 * radius), 8)), params=sp
            )
            d = 1.0 - d / 2.0
        else:
            lims, d, labels = index.range_search(q, radius, params=sp)
        return split_faiss_range(lims, d, labels, metric, radius, range_filter, limit)

    def _range_by_knn(self, q, radius, range_filter, params, filt, limit) -> list[RangeResult]:
        """Widen k (x4 per round) until each query's k-th result falls outside the radius."""
        metric, n = self.spec.metric, self.ntotal
        out: list[RangeResult | None] = [None] * q.shape[0]
        todo = np.arange(q.shape[0])
        k = min(n, max(RANGE_KNN_START, limit or 0))
        while todo.size:
            d, labels = self._float_knn(q[todo], k, params, filt)
            inside = in_range(d, metric, radius, None) & (labels >= 0)
            more = inside[:, -1] & (k < n)
            if limit is not None:
                more &= (inside & in_range(d, metric, radius, range_filter)).sum(axis=1) < limit
            for j in np.flatnonzero(~more):
                out[todo[j]] = select_range(d[j], labels[j], metric, radius, range_filter, limit)
            todo = todo[more]
            k = min(n, k * 4)
        return out  # type: ignore[return-value]

    def _range_binary(self, q, radius, range_filter, params, filt, limit) -> list[RangeResult]:
        metric = self.spec.metric
        mask = filt.mask if filt is not None else None
        if self._kind == "bivf":
            return self._bin.lists().range(
                q, metric, radius, range_filter, limit, self._nprobe(params, filt), mask
            )
        if metric == "JACCARD":
            return binary_range(self._bin.codes(), q, metric, radius, range_filter, limit, mask)
        # faiss keeps d < r for an int r; for integer d, d < radius <=> d < ceil(radius)
        r = int(np.ceil(min(max(radius, 0.0), self._width * 8 + 1.0)))
        sp = faiss.SearchParameters(sel=filt.selector) if filt is not None else None
        lims, d, labels = self._index.range_search(q, r, params=sp)
        return split_faiss_range(lims, d.astype(np.float32), labels, metric, radius, range_filter, limit)

    def __repr__(self) -> str:
        return (
            f"VectorIndex({self.spec.index_type}, {self.spec.metric}, ntotal={self.ntotal}, "
            f"faiss={type(self._index).__name__})"
        )


__all__ = ["RowFilter", "VectorIndex", "IndexSpecError"]
