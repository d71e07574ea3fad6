"""Index and search params of SPARSE_FLOAT_VECTOR fields (Milvus's names, ranges and defaults).

SPARSE_INVERTED_INDEX and SPARSE_WAND (and AUTOINDEX, which maps to SPARSE_INVERTED_INDEX) are
all served by one exact inverted-index scan (``indexer/sparse.py``): results equal brute force,
whatever ``inverted_index_algo`` says (TAAT_NAIVE, DAAT_WAND and DAAT_MAXSCORE only change how
Milvus walks its posting lists, not the answer). Metrics: IP, and BM25 for the output field of a
BM25 function, with ``bm25_k1`` (default 1.2, in [1.2, 3]) and ``bm25_b`` (default 0.75, in [0, 1]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SPARSE_INDEX_TYPES = ("SPARSE_INVERTED_INDEX", "SPARSE_WAND")
SPARSE_METRICS = ("IP", "BM25")
ALGOS = ("TAAT_NAIVE", "DAAT_WAND", "DAAT_MAXSCORE")
SPARSE_SEARCH_KEYS = frozenset({"drop_ratio_search"})
_FLOATS = {
    "drop_ratio_build": (0.0, 0.0, 1.0, False),  # default, low, high, high inclusive
    "bm25_k1": (1.2, 1.2, 3.0, True),
    "bm25_b": (0.75, 0.0, 1.0, True),
}


def _float(value: Any, what: str, low: float, high: float, inclusive: bool, error: type[Exception]) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise error(f"{what}={value!r} must be a number") from None
    if isinstance(value, bool) or not (low <= out <= high if inclusive else low <= out < high):
        raise error(f"{what}={value!r} must be in [{low}, {high}{']' if inclusive else ')'}")
    return out


def parse_sparse(
    index_type: str | None, metric: str | None, params: Mapping[str, Any], error: type[Exception]
) -> tuple[str, str, dict[str, Any], str]:
    """(index type, metric, params with defaults, requested type) of a sparse index, or ``error``."""
    itype = (index_type or "AUTOINDEX").strip().upper()
    requested = ""
    if itype == "AUTOINDEX":
        itype, requested = "SPARSE_INVERTED_INDEX", "AUTOINDEX"
    if itype not in SPARSE_INDEX_TYPES:
        raise error(
            f"index type {itype} cannot index a SPARSE_FLOAT_VECTOR field; use one of "
            f"{', '.join(SPARSE_INDEX_TYPES)} or AUTOINDEX"
        )
    mname = (metric or "IP").strip().upper()
    if mname not in SPARSE_METRICS:
        raise error(
            f"index type {itype}: metric {mname} is not valid for SPARSE_FLOAT_VECTOR; use IP or BM25"
        )
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in _FLOATS:
            _, low, high, inclusive = _FLOATS[key]
            if key.startswith("bm25_") and mname != "BM25":
                raise error(f"index type {itype}: param {key} is for metric BM25 only")
            out[key] = _float(value, f"index type {itype}: param {key}", low, high, inclusive, error)
        elif key == "inverted_index_algo":
            algo = str(value).strip().upper()
            if algo not in ALGOS:
                raise error(
                    f"index type {itype}: param inverted_index_algo={value!r} must be one of {', '.join(ALGOS)}"
                )
            out[key] = algo
        else:
            raise error(
                f"index type {itype}: param {key!r} is not supported by walvus; supported: "
                "drop_ratio_build, inverted_index_algo, bm25_k1, bm25_b"
            )
    out.setdefault("drop_ratio_build", 0.0)
    out.setdefault("inverted_index_algo", "DAAT_MAXSCORE")
    if mname == "BM25":
        out.setdefault("bm25_k1", 1.2)
        out.setdefault("bm25_b", 0.75)
    return itype, mname, out, requested


def drop_ratio_search(params: Mapping[str, Any], error: type[Exception]) -> float:
    """The search's ``drop_ratio_search`` (default 0); any other index knob is refused."""
    for key in params:
        if key in ("nprobe", "ef", "itopk_size", "reorder_k", "refine_k"):
            raise error(f"search param {key} is not valid for a SPARSE_FLOAT_VECTOR field")
    value = params.get("drop_ratio_search")
    if value is None:
        return 0.0
    return _float(value, "search param drop_ratio_search", 0.0, 1.0, False, error)
