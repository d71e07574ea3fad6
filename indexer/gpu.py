"""GPU_* index types: build on a GPU with faiss-gpu / cuVS, store and search on the CPU.

With faiss-cpu (no `StandardGpuResources`, or `get_num_gpus() == 0`) every GPU_* type raises
`GpuUnavailableError`; walvus does not silently fall back to a CPU index. When a GPU exists the
index is trained and filled on device 0 and converted back to its CPU equivalent for storage:

* GPU_BRUTE_FORCE -> IndexFlat (nothing to train)
* GPU_IVF_FLAT    -> "IVF{nlist},Flat" via index_cpu_to_gpu / index_gpu_to_cpu
* GPU_IVF_PQ      -> "IVF{nlist},PQ{m}x{nbits}" likewise
* GPU_CAGRA       -> GpuIndexCagra, copied into an IndexHNSWCagra (searched as HNSW with `ef`)

so saved files load and search on machines without a GPU.

Searching: `place_for_search` decides where a loaded GPU_* index is searched. With
``WALVUS_GPU_SEARCH=auto`` (the searcher's default) and a GPU present, the stored CPU copy is
moved to GPU 0 (``index_cpu_to_gpu`` for FLAT / IVF; CAGRA back into a ``GpuIndexCagra``, which
needs a faiss build with cuVS) and unfiltered k-NN searches with k <= 2048 run there. Filtered
and range searches, and every search without a GPU or with ``WALVUS_GPU_SEARCH=off``, use the
stored CPU copy: IndexFlat / IVF for GPU_BRUTE_FORCE / GPU_IVF_*, and HNSW for GPU_CAGRA, the
CPU fallback Milvus also allows for CAGRA (``adapt_for_cpu``). On that fallback CAGRA's
``itopk_size`` becomes HNSW's ``ef``; ``search_width``, ``min_iterations``, ``max_iterations``
and ``team_size`` are still validated, and have no HNSW meaning (a debug line says so).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import faiss
import numpy as np

from schemas.index_spec import GpuUnavailableError, IndexSpec, IndexSpecError, search_int
from walvus.gpu import gpu_available, require_gpu

log = logging.getLogger(__name__)

ADD_BATCH = 1 << 16
GPU_SEARCH_MODES = ("auto", "off")
GPU_MAX_K = 2048  # faiss's GPU k-selection limit (k and nprobe)
CAGRA_SEARCH_PARAMS = ("itopk_size", "search_width", "min_iterations", "max_iterations", "team_size")


def build_gpu_index(
    spec: IndexSpec,
    x: np.ndarray,
    metric_type: int,
    progress: Callable[[int, int], None] | None = None,
) -> faiss.Index:
    """Build a GPU_* index on GPU 0 and return its CPU copy. `x` is float32, already normalised for COSINE."""
    require_gpu(spec.index_type)
    n, d = x.shape
    p = spec.params
    if spec.index_type == "GPU_BRUTE_FORCE":
        cpu = faiss.IndexFlat(d, metric_type)
        _add(cpu, x, progress)
        return cpu

    res = faiss.StandardGpuResources()
    try:
        if spec.index_type == "GPU_CAGRA":
            return _build_cagra(res, spec, x, metric_type, progress)
        nlist = max(1, min(int(p["nlist"]), n // 39 or n))
        desc = (
            f"IVF{nlist},Flat"
            if spec.index_type == "GPU_IVF_FLAT"
            else f"IVF{nlist},PQ{p['m']}x{p['nbits']}np"
        )
        gpu = faiss.index_cpu_to_gpu(res, 0, faiss.index_factory(d, desc, metric_type))
        gpu.train(x)
        _add(gpu, x, progress)
        return faiss.index_gpu_to_cpu(gpu)
    except RuntimeError as exc:  # faiss/cuVS reject some combinations (e.g. PQ sub-vector sizes)
        raise IndexSpecError(f"index type {spec.index_type}: GPU build failed: {exc}") from exc


def _build_cagra(res, spec: IndexSpec, x: np.ndarray, metric_type: int, progress) -> faiss.Index:
    if not hasattr(faiss, "GpuIndexCagra"):
        raise GpuUnavailableError(
            "index type GPU_CAGRA needs a faiss build with cuVS (GpuIndexCagra): "
            "pip install 'walvus[gpu]' on a machine with CUDA"
        )
    n, d = x.shape
    cfg = faiss.GpuIndexCagraConfig()
    cfg.intermediate_graph_degree = int(spec.params["intermediate_graph_degree"])
    cfg.graph_degree = int(spec.params["graph_degree"])
    if spec.params.get("build_algo") == "NN_DESCENT":
        if not hasattr(faiss, "graph_build_algo_NN_DESCENT"):
            raise IndexSpecError(
                "index type GPU_CAGRA: param build_algo=NN_DESCENT is not in this faiss build"
            )
        cfg.build_algo = faiss.graph_build_algo_NN_DESCENT
    gpu = faiss.GpuIndexCagra(res, d, metric_type, cfg)
    if progress is not None:
        progress(0, n)
    gpu.train(x)  # CAGRA builds its graph over the whole training set
    cpu = faiss.IndexHNSWCagra()
    gpu.copyTo(cpu)
    if progress is not None:
        progress(n, n)
    return cpu


def _add(index, x: np.ndarray, progress) -> None:
    n = x.shape[0]
    for start in range(0, n, ADD_BATCH):
        index.add(x[start : start + ADD_BATCH])
        if progress is not None:
            progress(min(n, start + ADD_BATCH), n)
    if n == 0 and progress is not None:
        progress(0, 0)


def check_gpu_search_mode(mode: str) -> str:
    """Normalise a WALVUS_GPU_SEARCH value; anything but auto / off is an error."""
    value = str(mode).strip().lower()
    if value not in GPU_SEARCH_MODES:
        raise IndexSpecError(f"gpu search mode {mode!r} must be one of {', '.join(GPU_SEARCH_MODES)}")
    return value


def cagra_search_params(params: Mapping[str, Any] | None, k: int) -> dict[str, int]:
    """Milvus's CAGRA search params, validated; itopk_size defaults to max(64, k) and is raised to k."""
    out = {"itopk_size": max(k, search_int(params, ("itopk_size", "ef"), max(64, k)))}
    for name in CAGRA_SEARCH_PARAMS[1:]:
        value = search_int(params, (name,), 0, low=0)
        if value:
            out[name] = value
    return out


class GpuSearchIndex:
    """A GPU copy of a stored GPU_* index; searches are serialised (one stream per resources object)."""

    def __init__(self, index_type: str, index: Any, resources: Any, gpu: Any = faiss) -> None:
        self.index_type = index_type
        self.index = index
        self._res = resources  # keeps the GPU memory alive as long as the index
        self._gpu = gpu
        self._lock = threading.Lock()

    def search(
        self, q: np.ndarray, k: int, params: Mapping[str, Any] | None = None, nprobe: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """k-NN over float32 queries: (distances, labels) exactly as faiss returns them."""
        if self.index_type == "GPU_CAGRA" and hasattr(self._gpu, "SearchParametersCagra"):
            sp = self._gpu.SearchParametersCagra()
            for name, value in cagra_search_params(params, k).items():
                setattr(sp, name, value)
        elif nprobe:
            sp = self._gpu.SearchParametersIVF(nprobe=min(nprobe, GPU_MAX_K))
        else:
            sp = None
        with self._lock:
            return self.index.search(q, k, params=sp)


def place_for_search(
    spec: IndexSpec, index: Any, mode: str = "auto", gpu: Any = faiss
) -> GpuSearchIndex | None:
    """A GPU copy of `index` to search on, or None to search the stored CPU copy.

    GPU only for GPU_* specs (not CAGRA with adapt_for_cpu) with `mode` auto and a GPU present;
    `gpu` is the faiss module (a fake in tests). A CAGRA graph (stored as IndexHNSWCagra) goes back to GpuIndexCagra when the
    build has cuVS, else it is searched on the CPU as HNSW.
    """
    mode = check_gpu_search_mode(mode)
    if mode == "off" or not spec.is_gpu or spec.params.get("adapt_for_cpu") or int(index.ntotal) == 0:
        return None
    if not gpu_available(gpu):
        log.info("gpu search off: no GPU index_type=%s fallback=%s", spec.index_type, type(index).__name__)
        return None
    cagra = isinstance(index, faiss.IndexHNSW)
    if cagra and not hasattr(gpu, "GpuIndexCagra"):
        log.info("gpu search off: faiss has no cuVS index_type=GPU_CAGRA fallback=HNSW")
        return None
    res = gpu.StandardGpuResources()
    try:
        if cagra:
            gpu_index = gpu.GpuIndexCagra(res, index.d, index.metric_type, gpu.GpuIndexCagraConfig())
            gpu_index.copyFrom(index)
        else:
            gpu_index = gpu.index_cpu_to_gpu(res, 0, index)
    except RuntimeError as exc:
        raise IndexSpecError(
            f"index type {spec.index_type}: moving the index to the GPU failed: {exc}"
        ) from exc
    return GpuSearchIndex(spec.index_type, gpu_index, res, gpu)
