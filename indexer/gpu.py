"""GPU_* index types: build on a GPU with faiss-gpu / cuVS, store and search on the CPU.

With faiss-cpu (no `StandardGpuResources`, or `get_num_gpus() == 0`) every GPU_* type raises
`GpuUnavailableError`; walvus does not silently fall back to a CPU index. When a GPU exists the
index is trained and filled on device 0 and converted back to its CPU equivalent for storage:

* GPU_BRUTE_FORCE -> IndexFlat (nothing to train)
* GPU_IVF_FLAT    -> "IVF{nlist},Flat" via index_cpu_to_gpu / index_gpu_to_cpu
* GPU_IVF_PQ      -> "IVF{nlist},PQ{m}x{nbits}" likewise
* GPU_CAGRA       -> GpuIndexCagra, copied into an IndexHNSWCagra (searched as HNSW with `ef`)

so saved files load and search on machines without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

from indexer.spec import GpuUnavailableError, IndexSpec, IndexSpecError

ADD_BATCH = 1 << 16


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    if get_num_gpus is None or not hasattr(faiss, "StandardGpuResources"):
        return False
    try:
        return int(get_num_gpus()) > 0
    except Exception:  # a broken CUDA runtime is the same as no GPU here
        return False


def require_gpu(index_type: str) -> None:
    """Raise GpuUnavailableError unless a GPU can build `index_type`."""
    if not gpu_available():
        raise GpuUnavailableError(
            f"index type {index_type} needs a GPU build of faiss: "
            "pip install 'walvus[gpu]' on a machine with CUDA"
        )


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
    if spec.params.get("build_algo") == "NN_DESCENT" and hasattr(faiss, "graph_build_algo_NN_DESCENT"):
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
