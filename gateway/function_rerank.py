"""Function rerankers: ``Function(type=RERANK)`` in search and hybrid search, as Milvus 2.6 scores them.

pymilvus sends the function as ``function_score`` (one ``FunctionSchema`` whose params are
strings). Supported ``reranker`` params:

- ``decay`` (``function`` gauss, exp or linear; ``origin``, ``scale``, ``offset`` = 0,
  ``decay`` = 0.5) on one numeric input field. With ``d = max(0, |v - origin| - offset)``:
  gauss ``exp(-d^2 / (2 sigma^2))`` where ``sigma^2 = -scale^2 / (2 ln decay)``; exp
  ``exp(d ln(decay) / scale)``; linear ``max(0, (s - d) / s)`` where ``s = scale / (1 - decay)``.
  A hit's final score is its similarity times its decay score; the similarity is the distance
  itself for IP, COSINE and BM25 and ``1 - 2 atan(d) / pi`` for the distance metrics (L2,
  HAMMING, JACCARD...); in a hybrid search, the largest similarity over the requests that
  found the hit. A hit whose field value is null gets decay score 0.
- ``rrf`` (``k``) and ``weighted`` (``weights`` in [0, 1], ``norm_score`` off by default):
  ``Ranker.from_function`` (``gateway/ranker.py``); in a plain search they rank the one
  request's hits.

Model rerankers (``reranker: model``, a network provider) and anything else are refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pymilvus.grpc_gen import schema_pb2

from gateway.ranker import Ranker
from schemas.collection import CollectionSchema
from schemas.exceptions import InvalidArgument

DECAY_FUNCTIONS = ("gauss", "exp", "linear")
_SIMILARITY_METRICS = ("IP", "COSINE", "BM25")
_DECAY_KEYS = {"reranker", "function", "origin", "scale", "offset", "decay"}

# one request's hits: ids, distances (best first), and the hits' rows of output fields
RequestHits = tuple[Sequence[Any], np.ndarray, pa.Table]


class FunctionRerankError(InvalidArgument):
    """A rerank function that is malformed or that walvus does not run."""


def param_value(raw: str) -> Any:
    """A function param as pymilvus sends it (``str(v)``, or JSON for lists and dicts)."""
    text = raw.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return json.loads(text)
    except ValueError:
        return raw


def _number(params: dict[str, Any], key: str, default: float | None = None) -> float:
    value = params.get(key, default)
    if value is None:
        raise FunctionRerankError(f"decay reranker needs the param {key!r}")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FunctionRerankError(f"decay reranker param {key!r} must be a number, got {value!r}")
    return float(value)


def decay_scores(
    function: str, values: np.ndarray, origin: float, scale: float, offset: float, decay: float
) -> np.ndarray:
    """Decay score in [0, 1] of each value (float64; NaN values score 0)."""
    dist = np.maximum(0.0, np.abs(np.asarray(values, dtype=np.float64) - origin) - offset)
    if function == "gauss":
        sigma2 = -(scale**2) / (2.0 * math.log(decay))
        out = np.exp(-(dist**2) / (2.0 * sigma2))
    elif function == "exp":
        out = np.exp(dist * (math.log(decay) / scale))
    elif function == "linear":
        s = scale / (1.0 - decay)
        out = np.maximum(0.0, (s - dist) / s)
    else:
        raise FunctionRerankError(f"decay function {function!r} is not one of {', '.join(DECAY_FUNCTIONS)}")
    return np.nan_to_num(out, nan=0.0)


def similarity(distances: np.ndarray, metric: str) -> np.ndarray:
    """Stage 1 of decay ranking: larger is better; distances mapped into (0, 1]."""
    d = np.asarray(distances, dtype=np.float64)
    if metric.upper() in _SIMILARITY_METRICS:
        return d
    return 1.0 - 2.0 * np.arctan(d) / math.pi


@dataclass(frozen=True)
class DecayRanker:
    field: str
    function: str
    origin: float
    scale: float
    offset: float = 0.0
    decay: float = 0.5

    @classmethod
    def parse(cls, params: dict[str, Any], inputs: Sequence[str], schema: CollectionSchema) -> DecayRanker:
        unknown = sorted(set(params) - _DECAY_KEYS)
        if unknown:
            raise FunctionRerankError(f"decay reranker does not take the params {unknown}")
        if len(inputs) != 1:
            raise FunctionRerankError(
                f"decay reranker needs exactly one input field, got {len(inputs)}: {list(inputs)}"
            )
        field = schema.field(inputs[0])
        if field is None:
            raise FunctionRerankError(f"decay reranker input field {inputs[0]!r} is not in the collection")
        if not field.dtype.is_numeric:
            raise FunctionRerankError(
                f"decay reranker input field {field.name!r} must be numeric "
                f"(INT8, INT16, INT32, INT64, FLOAT or DOUBLE), it is {field.dtype.name}"
            )
        function = params.get("function")
        if function not in DECAY_FUNCTIONS:
            raise FunctionRerankError(
                f"decay reranker function must be one of {', '.join(DECAY_FUNCTIONS)}, got {function!r}"
            )
        scale = _number(params, "scale")
        offset = _number(params, "offset", 0.0)
        decay = _number(params, "decay", 0.5)
        if scale <= 0:
            raise FunctionRerankError(f"decay reranker scale must be > 0, got {scale}")
        if offset < 0:
            raise FunctionRerankError(f"decay reranker offset must be >= 0, got {offset}")
        if not 0 < decay < 1:
            raise FunctionRerankError(f"decay reranker decay must be in (0, 1), got {decay}")
        return cls(field.name, function, _number(params, "origin"), scale, offset, decay)

    @property
    def input_fields(self) -> list[str]:
        return [self.field]

    def scores(self, values: np.ndarray) -> np.ndarray:
        return decay_scores(self.function, values, self.origin, self.scale, self.offset, self.decay)

    def fuse(
        self, results: Sequence[RequestHits], metrics: Sequence[str], limit: int, offset: int
    ) -> tuple[list[Any], np.ndarray, list[tuple[int, int]]]:
        """Rerank one query's hits of every request: ids, scores (best first), and origins."""
        sizes = [len(ids) for ids, _, _ in results]
        if not sum(sizes):
            return [], np.zeros(0, dtype=np.float32), []
        ids = np.concatenate([np.asarray(list(ids)) for ids, _, _ in results if len(ids)])
        sims = np.concatenate([similarity(d, m) for (_, d, _), m in zip(results, metrics, strict=True)])
        values = np.concatenate(
            [
                t.column(self.field).to_numpy(zero_copy_only=False).astype(np.float64)
                for (_, _, t), n in zip(results, sizes, strict=True)
                if n
            ]
        )
        uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        best = np.full(len(uniq), -np.inf)
        np.maximum.at(best, inverse.ravel(), sims)
        final = best * self.scores(values[first])
        order = np.lexsort((first, -final))[offset : offset + limit]
        starts = np.cumsum([0, *sizes])
        where = first[order]
        req = np.searchsorted(starts, where, side="right") - 1
        origin = [(int(r), int(w - starts[r])) for r, w in zip(req, where, strict=True)]
        return uniq[order].tolist(), final[order].astype(np.float32), origin


@dataclass(frozen=True)
class FusionRanker:
    """RRF or weighted given as a function: the hybrid rankers over ``(ids, distances)``."""

    ranker: Ranker

    @property
    def input_fields(self) -> list[str]:
        return []

    def fuse(
        self, results: Sequence[RequestHits], metrics: Sequence[str], limit: int, offset: int
    ) -> tuple[list[Any], np.ndarray, list[tuple[int, int]]]:
        return self.ranker.fuse([(list(ids), d) for ids, d, _ in results], metrics, limit, offset)


FunctionRanker = DecayRanker | FusionRanker


def parse_function_score(
    score: schema_pb2.FunctionScore, schema: CollectionSchema, n_requests: int
) -> FunctionRanker:
    """The reranker a ``function_score`` asks for, or a clear error."""
    if len(score.functions) != 1:
        raise FunctionRerankError(f"a search takes exactly one rerank function, got {len(score.functions)}")
    if len(score.params):
        raise FunctionRerankError(
            f"function score params {[kv.key for kv in score.params]} are not supported"
        )
    fn = score.functions[0]
    if fn.type != schema_pb2.FunctionType.Rerank:
        raise FunctionRerankError(
            f"function {fn.name!r} is of type {schema_pb2.FunctionType.Name(fn.type)}; "
            "a search ranker must be of type RERANK"
        )
    if len(fn.output_field_names):
        raise FunctionRerankError(f"rerank function {fn.name!r} takes no output fields")
    params = {kv.key: param_value(kv.value) for kv in fn.params}
    kind = str(params.get("reranker", "")).lower()
    inputs = list(fn.input_field_names)
    if kind == "decay":
        return DecayRanker.parse(params, inputs, schema)
    if kind in ("rrf", "weighted"):
        return FusionRanker(Ranker.from_function({kv.key: kv.value for kv in fn.params}, inputs, n_requests))
    if kind == "model":
        raise FunctionRerankError(
            "model rerankers call an external provider over the network and are not supported "
            "by walvus: use the decay, rrf or weighted reranker"
        )
    if not kind:
        raise FunctionRerankError("reranker name not specified: use decay, rrf or weighted")
    raise FunctionRerankError(f"unsupported reranker {params.get('reranker')!r}: use decay, rrf or weighted")
