"""Build faiss indexes from an IndexSpec (Milvus index types mapped to faiss).

FLAT -> IndexFlat; IVF_FLAT -> "IVF{nlist},Flat"; IVF_SQ8 -> "IVF{nlist},SQ8";
IVF_PQ -> "IVF{nlist},PQ{m}x{nbits}"; HNSW -> IndexHNSWFlat(d, M) with efConstruction;
SCANN -> "IVF{nlist},PQ{d/2}x4fs,RFlat" (4-bit fast-scan PQ, exact re-rank; no RFlat when
with_raw_data is false); BIN_FLAT -> IndexBinaryFlat; BIN_IVF_FLAT -> IndexBinaryIVF;
GPU_* -> `indexer.gpu`. COSINE vectors arrive normalised and use the inner-product metric,
except for the quantised types (IVF_SQ8, IVF_PQ, SCANN), which index normalised vectors with L2
(same ranking, ``cos = 1 - l2 / 2``): faiss's IP codebooks and fast-scan tables lose much more
recall on normalised data (measured: SCANN candidates@40 0.83 with IP vs 1.00 with L2).

Small segments (each adjustment is recorded in the returned notes):

* IVF types clamp nlist to ``max(1, min(nlist, n // 39 or n))`` so k-means has >= 39 points per
  centroid (faiss's own minimum) or, below 39 rows, one list per row.
* IVF_PQ needs at least 10 * 2**nbits rows to train its codebooks (faiss cannot train below
  2**nbits at all); smaller segments store "IVF{nlist},Flat" instead: exact distances, and the
  extra memory is negligible at that size. SCANN does the same below 160 rows.
* An empty segment is stored as a FLAT index.

Training uses at most ``256 * max(nlist, 256)`` rows, sampled with a fixed seed, so builds are
deterministic and memory-bounded; every row is then added in batches, reporting progress.
faiss 1.15 only uses BLAS for batches of >= 128000 query rows, which makes PQ codebook training
with small sub-vectors ~10x slower; training runs with the classic threshold of 20 instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import contextmanager

import faiss
import numpy as np

from indexer.exact import faiss_metric
from indexer.gpu import build_gpu_index
from schemas.index_spec import IndexSpec, IndexSpecError

ADD_BATCH = 1 << 16
PQ_MIN_ROWS_PER_CENTROID = 10
COSINE_VIA_L2 = frozenset({"IVF_SQ8", "IVF_PQ", "SCANN"})
TRAIN_BLAS_THRESHOLD = 20
Progress = Callable[[int, int], None] | None

_blas_lock = threading.Lock()
_blas_users = 0
_blas_saved = 0


@contextmanager
def _blas_training():
    """Lower faiss's BLAS threshold while any build trains (a process-wide faiss setting)."""
    global _blas_users, _blas_saved
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved = faiss.cvar.distance_compute_blas_threshold
            faiss.cvar.distance_compute_blas_threshold = min(_blas_saved, TRAIN_BLAS_THRESHOLD)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                faiss.cvar.distance_compute_blas_threshold = _blas_saved


def index_metric(spec: IndexSpec) -> int:
    """faiss metric a float spec is built with (see COSINE_VIA_L2)."""
    if spec.metric == "COSINE" and spec.index_type in COSINE_VIA_L2:
        return faiss.METRIC_L2
    return faiss_metric(spec.metric)


def clamp_nlist(nlist: int, n: int) -> int:
    """nlist a segment of n rows can train: at most n // 39 lists, or n lists below 39 rows."""
    return max(1, min(int(nlist), n // 39 or n))


def _add(index, x: np.ndarray, progress: Progress) -> None:
    n = x.shape[0]
    if progress is not None:
        progress(0, n)
    for start in range(0, n, ADD_BATCH):
        index.add(x[start : start + ADD_BATCH])
        if progress is not None:
            progress(min(n, start + ADD_BATCH), n)


def _training_sample(x: np.ndarray, nlist: int) -> np.ndarray:
    cap = 256 * max(nlist, 256)
    if x.shape[0] <= cap:
        return x
    rows = np.sort(np.random.default_rng(0).choice(x.shape[0], cap, replace=False))
    return np.ascontiguousarray(x[rows])


def _ivf_description(spec: IndexSpec, n: int, d: int, notes: list[str]) -> tuple[str, int]:
    p = spec.params
    nlist = clamp_nlist(p["nlist"], n)
    if nlist != p["nlist"]:
        notes.append(f"nlist clamped from {p['nlist']} to {nlist} for a segment of {n} rows")
    t = spec.index_type
    if t == "IVF_FLAT":
        return f"IVF{nlist},Flat", nlist
    if t == "IVF_SQ8":
        return f"IVF{nlist},SQ8", nlist
    if t == "IVF_PQ":
        need = PQ_MIN_ROWS_PER_CENTROID * 2 ** p["nbits"]
        if n < need:
            notes.append(f"IVF_PQ needs {need} rows to train PQ{p['m']}x{p['nbits']}; stored IVF{nlist},Flat")
            return f"IVF{nlist},Flat", nlist
        return f"IVF{nlist},PQ{p['m']}x{p['nbits']}np", nlist
    if t == "SCANN":
        need = PQ_MIN_ROWS_PER_CENTROID * 16
        if n < need:
            notes.append(f"SCANN needs {need} rows to train 4-bit PQ; stored IVF{nlist},Flat")
            return f"IVF{nlist},Flat", nlist
        refine = ",RFlat" if p.get("with_raw_data", True) else ""
        return f"IVF{nlist},PQ{d // 2}x4fs{refine}", nlist
    raise IndexSpecError(f"index type {t} is not an IVF type")


def build_float_index(
    spec: IndexSpec, x: np.ndarray, progress: Progress = None
) -> tuple[faiss.Index, list[str]]:
    """Build a float index over float32 (n, d) rows (already normalised for COSINE)."""
    n, d = x.shape
    metric = index_metric(spec)
    notes: list[str] = []
    t = spec.index_type
    if spec.is_gpu and n:
        return build_gpu_index(spec, x, metric, progress), notes
    if n == 0 or t == "FLAT":
        if n == 0 and t != "FLAT":
            notes.append(f"empty segment: stored as FLAT instead of {t}")
        index = faiss.IndexFlat(d, metric)
    elif t == "HNSW":
        index = faiss.IndexHNSWFlat(d, int(spec.params["M"]), metric)
        index.hnsw.efConstruction = int(spec.params["efConstruction"])
    else:
        desc, nlist = _ivf_description(spec, n, d, notes)
        index = faiss.index_factory(d, desc, metric)
        # the factory leaves fast-scan PQ encoding raw vectors; residuals (as IVF_PQ) double recall
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
        if isinstance(ivf, faiss.IndexIVFPQFastScan):
            ivf.by_residual = True
        if isinstance(ivf, faiss.IndexIVFPQ | faiss.IndexIVFPQFastScan):
            ivf.pq.cp.min_points_per_centroid = PQ_MIN_ROWS_PER_CENTROID  # our threshold; no stderr warning
        with _blas_training():
            index.train(_training_sample(x, nlist))
    _add(index, x, progress)
    return index, notes


def build_binary_index(
    spec: IndexSpec, x: np.ndarray, progress: Progress = None
) -> tuple[faiss.IndexBinary, list[str]]:
    """Build a binary index over packed uint8 (n, dim / 8) rows."""
    n, width = x.shape
    d = width * 8
    notes: list[str] = []
    if n == 0 or spec.index_type == "BIN_FLAT":
        if n == 0 and spec.index_type != "BIN_FLAT":
            notes.append(f"empty segment: stored as BIN_FLAT instead of {spec.index_type}")
        index = faiss.IndexBinaryFlat(d)
    else:
        nlist = clamp_nlist(spec.params["nlist"], n)
        if nlist != spec.params["nlist"]:
            notes.append(f"nlist clamped from {spec.params['nlist']} to {nlist} for a segment of {n} rows")
        quantizer = faiss.IndexBinaryFlat(d)
        index = faiss.IndexBinaryIVF(quantizer, d, nlist)
        quantizer.this.disown()  # the IVF index owns (and frees) its quantizer
        index.own_fields = True
        with _blas_training():
            index.train(_training_sample(x, nlist))
    _add(index, x, progress)
    return index, notes
