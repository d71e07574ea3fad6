"""Milvus index specifications: validation, defaults and the AUTOINDEX mapping.

`IndexSpec.parse` takes what a Milvus client sends to CreateIndex (index type, metric type,
build params) plus the field's dimension and vector type, and returns a validated spec with
Milvus's documented defaults filled in. Every problem raises `IndexSpecError` with a message
naming the index type and the offending param, suitable for returning to the client as-is.

Defaults (Milvus 2.5 docs): nlist 128 for every IVF type, nbits 8 for IVF_PQ (m is required and
must divide dim), HNSW M 30 / efConstruction 360, SCANN with_raw_data true, GPU_CAGRA
intermediate_graph_degree 128 / graph_degree 64 / build_algo IVF_PQ / adapt_for_cpu false, GPU_*
cache_dataset_on_device false. AUTOINDEX resolves to HNSW with Milvus's
shipped ``autoIndex.params.build`` values (M 18, efConstruction 240) for float vectors and to
BIN_FLAT for binary vectors; user build params are ignored for AUTOINDEX, as in Milvus. A missing
metric defaults to COSINE for float vectors and HAMMING for binary vectors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.sparse_index_spec import parse_sparse

FLOAT_VECTOR_TYPES = ("FLOAT_VECTOR", "FLOAT16_VECTOR", "BFLOAT16_VECTOR", "INT8_VECTOR")
INT8_INDEX_TYPES = ("HNSW", "FLAT", "AUTOINDEX")  # as Milvus 2.6 offers for INT8_VECTOR
VECTOR_TYPES = (*FLOAT_VECTOR_TYPES, "BINARY_VECTOR")
FLOAT_METRICS = ("L2", "IP", "COSINE")
BINARY_METRICS = ("HAMMING", "JACCARD")
SIMILARITY_METRICS = frozenset({"IP", "COSINE", "BM25"})  # larger is better

FLOAT_INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "SCANN")
BINARY_INDEX_TYPES = ("BIN_FLAT", "BIN_IVF_FLAT")
GPU_INDEX_TYPES = ("GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_CAGRA", "GPU_BRUTE_FORCE")
INDEX_TYPES = (*FLOAT_INDEX_TYPES, *BINARY_INDEX_TYPES, *GPU_INDEX_TYPES, "AUTOINDEX")

MAX_DIM = 32768
INT_MAX = 2**31 - 1
AUTOINDEX_FLOAT = ("HNSW", {"M": 18, "efConstruction": 240})
AUTOINDEX_BINARY = ("BIN_FLAT", {})

# name -> (kind, default, low, high); default None means required. kind "choice" uses low as the options.
_NLIST = ("int", 128, 1, 65536)
_SCHEMAS: dict[str, dict[str, tuple[str, Any, Any, Any]]] = {
    "FLAT": {},
    "IVF_FLAT": {"nlist": _NLIST},
    "IVF_SQ8": {"nlist": _NLIST},
    "IVF_PQ": {"nlist": _NLIST, "m": ("int", None, 1, 65536), "nbits": ("int", 8, 1, 16)},
    "HNSW": {"M": ("int", 30, 2, 2048), "efConstruction": ("int", 360, 1, INT_MAX)},
    "SCANN": {"nlist": _NLIST, "with_raw_data": ("bool", True, None, None)},
    "BIN_FLAT": {},
    "BIN_IVF_FLAT": {"nlist": _NLIST},
    # cache_dataset_on_device: accepted and checked; walvus keeps no raw copy on the GPU for refinement
    "GPU_IVF_FLAT": {"nlist": _NLIST, "cache_dataset_on_device": ("bool", False, None, None)},
    "GPU_IVF_PQ": {
        "nlist": _NLIST,
        "m": ("int", None, 1, 65536),
        "nbits": ("int", 8, 1, 16),
        "cache_dataset_on_device": ("bool", False, None, None),
    },
    "GPU_CAGRA": {
        "intermediate_graph_degree": ("int", 128, 1, 2048),
        "graph_degree": ("int", 64, 1, 2048),
        "build_algo": ("choice", "IVF_PQ", ("IVF_PQ", "NN_DESCENT"), None),
        "cache_dataset_on_device": ("bool", False, None, None),
        "adapt_for_cpu": (
            "bool",
            False,
            None,
            None,
        ),  # true: built on a GPU, always searched as HNSW on the CPU
    },
    "GPU_BRUTE_FORCE": {},
}
_IGNORED_KEYS = frozenset({"index_type", "metric_type", "dim", "params"})
_DATA_TYPE_CODES = {
    100: "BINARY_VECTOR",
    101: "FLOAT_VECTOR",
    102: "FLOAT16_VECTOR",
    103: "BFLOAT16_VECTOR",
    105: "INT8_VECTOR",
}


class IndexSpecError(ValueError):
    """An index type, metric, build param or search param is invalid."""


class GpuUnavailableError(IndexSpecError):
    """A GPU_* index type was requested but faiss has no usable GPU."""


def is_similarity(metric: str) -> bool:
    """True when larger distances are better (IP, COSINE)."""
    return metric in SIMILARITY_METRICS


def normalize_vector_type(vector_type: Any) -> str:
    """Accept 'FLOAT_VECTOR', 'FloatVector', a pymilvus DataType or its int code; return the canonical name."""
    if isinstance(vector_type, int) and not isinstance(vector_type, bool):
        name = _DATA_TYPE_CODES.get(int(vector_type), str(vector_type))
    else:
        name = str(getattr(vector_type, "name", vector_type))
    key = name.upper().replace("_", "")
    for canonical in VECTOR_TYPES:
        if canonical.replace("_", "") == key:
            return canonical
    raise IndexSpecError(
        f"vector type {name!r} cannot be indexed here; expected one of {', '.join(VECTOR_TYPES)}"
    )


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise IndexSpecError(f"{what}={value!r} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise IndexSpecError(f"{what}={value!r} must be an integer")


def _as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise IndexSpecError(f"{what}={value!r} must be true or false")


def search_int(params: Mapping[str, Any] | None, names: tuple[str, ...], default: int, low: int = 1) -> int:
    """Read an integer search param (first of `names` present), checking it is >= low."""
    if params:
        for name in names:
            if name in params and params[name] is not None:
                value = _as_int(params[name], f"search param {name}")
                if value < low:
                    raise IndexSpecError(f"search param {name}={value} must be >= {low}")
                return value
    return default


def _flatten(params: Mapping[str, Any] | None) -> dict[str, Any]:
    flat = dict(params or {})
    nested = flat.get("params")
    if isinstance(nested, str) and nested.strip():
        try:
            nested = json.loads(nested)
        except ValueError as exc:
            raise IndexSpecError(f"index params {nested!r} are not valid JSON") from exc
    if isinstance(nested, Mapping):
        flat.update(nested)
    return {k: v for k, v in flat.items() if k not in _IGNORED_KEYS}


@dataclass(frozen=True)
class IndexSpec:
    """A validated index definition. Build with `IndexSpec.parse`; `params` hold Milvus build params."""

    index_type: str
    metric: str
    params: Mapping[str, Any] = field(default_factory=dict)
    dim: int = 0
    vector_type: str = "FLOAT_VECTOR"
    requested_type: str = ""  # "AUTOINDEX" when index_type was resolved from it, else ""

    def __hash__(self) -> int:
        return hash(
            (self.index_type, self.metric, json.dumps(dict(self.params), sort_keys=True, default=str))
        )

    @property
    def is_binary(self) -> bool:
        return self.index_type in BINARY_INDEX_TYPES

    @property
    def is_gpu(self) -> bool:
        return self.index_type in GPU_INDEX_TYPES

    @property
    def similarity(self) -> bool:
        """True when larger distances are better (IP, COSINE)."""
        return is_similarity(self.metric)

    @classmethod
    def parse(
        cls,
        index_type: str | None,
        metric: str | None,
        params: Mapping[str, Any] | None,
        dim: int,
        vector_type: Any = "FLOAT_VECTOR",
    ) -> IndexSpec:
        """Validate a Milvus CreateIndex request and fill in Milvus defaults.

        Whether a GPU_* type can be built here is not the spec's business: the builder raises
        GpuUnavailableError (``walvus.gpu.require_gpu``), and a searcher loads a stored GPU index
        (kept as its CPU equivalent) on a CPU-only machine.
        """
        if str(getattr(vector_type, "name", vector_type)).upper() in ("SPARSE_FLOAT_VECTOR", "104"):
            itype, mname, out, requested = parse_sparse(index_type, metric, _flatten(params), IndexSpecError)
            return cls(itype, mname, out, 0, "SPARSE_FLOAT_VECTOR", requested)
        vtype = normalize_vector_type(vector_type)
        binary = vtype == "BINARY_VECTOR"
        dim = _as_int(dim, "dim")
        if not 1 <= dim <= MAX_DIM:
            raise IndexSpecError(f"dim={dim} must be in [1, {MAX_DIM}]")
        if binary and dim % 8:
            raise IndexSpecError(f"dim={dim} of a BINARY_VECTOR field must be a multiple of 8")

        itype = (index_type or "AUTOINDEX").strip().upper()
        if itype not in INDEX_TYPES:
            raise IndexSpecError(f"index type {itype} is not supported; supported: {', '.join(INDEX_TYPES)}")
        if vtype == "INT8_VECTOR" and itype not in INT8_INDEX_TYPES:
            raise IndexSpecError(
                f"index type {itype} cannot index an INT8_VECTOR field; use one of {', '.join(INT8_INDEX_TYPES)}"
            )
        mname = (metric or ("HAMMING" if binary else "COSINE")).strip().upper()
        allowed_metrics = BINARY_METRICS if binary else FLOAT_METRICS
        if mname not in allowed_metrics:
            raise IndexSpecError(
                f"index type {itype}: metric {mname} is not valid for {vtype}; use {' or '.join(allowed_metrics)}"
            )

        user = _flatten(params)
        requested = ""
        if itype == "AUTOINDEX":
            requested = itype
            itype, auto = AUTOINDEX_BINARY if binary else AUTOINDEX_FLOAT
            user = {k: v for k, v in user.items() if k not in _SCHEMAS[itype]} | dict(auto)
        if binary != (itype in BINARY_INDEX_TYPES):
            wanted = ", ".join(BINARY_INDEX_TYPES if binary else FLOAT_INDEX_TYPES + GPU_INDEX_TYPES)
            raise IndexSpecError(f"index type {itype} cannot index a {vtype} field; use one of {wanted}")

        out = dict(user)
        for name, (kind, default, low, high) in _SCHEMAS[itype].items():
            what = f"index type {itype}: param {name}"
            if user.get(name) is None:
                if default is None:
                    raise IndexSpecError(f"{what} is required")
                out[name] = default
                continue
            if kind == "int":
                value = _as_int(user[name], f"index type {itype}: param {name}")
                if not low <= value <= high:
                    raise IndexSpecError(f"{what}={value} must be in [{low}, {high}]")
            elif kind == "bool":
                value = _as_bool(user[name], f"index type {itype}: param {name}")
            else:
                value = str(user[name]).strip().upper()
                if value not in low:
                    raise IndexSpecError(f"{what}={user[name]!r} must be one of {', '.join(low)}")
            out[name] = value

        _cross_check(itype, out, dim)
        return cls(itype, mname, out, dim, vtype, requested)


def _cross_check(itype: str, params: dict[str, Any], dim: int) -> None:
    if itype in ("IVF_PQ", "GPU_IVF_PQ") and dim % params["m"]:
        raise IndexSpecError(f"index type {itype}: param m={params['m']} must divide dim={dim}")
    if itype == "SCANN" and dim % 2:
        raise IndexSpecError(f"index type SCANN: dim={dim} must be even (4-bit PQ over pairs of dimensions)")
    if itype == "GPU_CAGRA" and params["graph_degree"] > params["intermediate_graph_degree"]:
        raise IndexSpecError(
            f"index type GPU_CAGRA: param graph_degree={params['graph_degree']} must be <= "
            f"intermediate_graph_degree={params['intermediate_graph_degree']}"
        )
