"""Whether this process can build GPU_* indexes: a faiss build with GPU support that sees a GPU.

The indexer builds GPU_* indexes with it (``indexer.gpu``) and the gateway refuses a GPU_* CreateIndex
without it; a searcher loads stored GPU_* files (CPU copies) either way.
"""

from __future__ import annotations

from typing import Any

from schemas.index_spec import GpuUnavailableError


def gpu_available(gpu: Any = None) -> bool:
    """True when this faiss build (or the injected `gpu` module) has GPU support and sees a GPU."""
    if gpu is None:
        import faiss as gpu  # loaded when asked: a gateway needs faiss only for a GPU_* CreateIndex
    get_num_gpus = getattr(gpu, "get_num_gpus", None)
    if get_num_gpus is None or not hasattr(gpu, "StandardGpuResources"):
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
