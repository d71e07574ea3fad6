"""Hybrid search rerankers: reciprocal rank fusion and weighted scores, as Milvus defines them.

RRF scores a hit ``sum(1 / (k + rank))`` over the searches that found it (rank from 1).
Both come either as the classic rank params (``RRFRanker``/``WeightedRanker``) or as a
``Function(type=RERANK)`` with ``reranker`` ``rrf`` or ``weighted`` (Milvus 2.6's function form).
The weighted ranker scores ``sum(w_i * s_i)``, as Milvus 2.6 does: with ``norm_score`` each
distance is first mapped into [0, 1]: ``(1 + d) / 2`` for COSINE, ``0.5 + atan(d) / pi`` for IP,
``2 * atan(d) / pi`` for BM25 and ``1 - 2 * atan(d) / pi`` for L2 (and the binary distances), so
larger is better. Without it, a mix of similarity and distance metrics maps only the distances
(``1 - 2 * atan(d) / pi``) so that larger is better; metrics all of one direction keep their raw
values and rank in their own order (smallest first for distances).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.errors import NotSupported
from schemas.exceptions import InvalidArgument


@dataclass(frozen=True)
class Ranker:
    strategy: str  # "rrf" or "weighted"
    k: float = 60.0
    weights: tuple[float, ...] = ()
    norm_score: bool = True

    @classmethod
    def parse(cls, strategy: str, params: dict[str, Any], n_requests: int) -> Ranker:
        strategy = (strategy or "rrf").lower()
        if strategy == "rrf":
            k = params.get("k", 60)
            if isinstance(k, bool) or not isinstance(k, int | float) or not 0 < k < 16384:
                raise InvalidArgument(f"RRF ranker param k should be in range (0, 16384), got {k!r}")
            return cls("rrf", k=float(k))
        if strategy == "weighted":
            weights = params.get("weights")
            if not isinstance(weights, list) or not all(
                isinstance(w, int | float) and not isinstance(w, bool) for w in weights
            ):
                raise InvalidArgument(f"weighted ranker needs a list of numeric weights, got {weights!r}")
            if len(weights) != n_requests:
                raise InvalidArgument(
                    f"the length of weights param mismatch with ann search requests: "
                    f"{len(weights)} weights for {n_requests} requests"
                )
            return cls(
                "weighted",
                weights=tuple(float(w) for w in weights),
                norm_score=bool(params.get("norm_score", True)),
            )
        raise InvalidArgument(f"unsupported rank strategy {strategy!r}; use rrf or weighted")

    @classmethod
    def from_function(cls, reranker: Mapping[str, str], inputs: Sequence[str], n_requests: int) -> Ranker:
        """The ranker of a ``Function(type=RERANK)``: its params arrive as strings (``"60"``,
        ``"[0.3, 0.7]"``, ``"True"``); only ``rrf`` and ``weighted`` are offered, which read no field.
        As in Milvus, the function form's weights lie in [0, 1] and ``norm_score`` defaults to false."""
        kind = str(reranker.get("reranker", "")).lower()
        if kind not in ("rrf", "weighted"):
            raise NotSupported(
                f"rerank function reranker={kind or None!r} is not supported: walvus offers the "
                "rrf and weighted rerank functions (decay, boost and model rerankers are not offered)"
            )
        if inputs:
            raise InvalidArgument(f"the {kind} rerank function reads no input fields, got {list(inputs)}")
        known = {"reranker", "k"} if kind == "rrf" else {"reranker", "weights", "norm_score"}
        unknown = sorted(set(reranker) - known)
        if unknown:
            raise InvalidArgument(f"unknown params {unknown} for the {kind} rerank function")
        params: dict[str, Any] = {"norm_score": False} if kind == "weighted" else {}  # Milvus's default here
        for key, raw in reranker.items():
            if key == "norm_score":
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise InvalidArgument(f"rerank function norm_score should be a bool, got {raw!r}")
                params[key] = raw.lower() in ("true", "1")
            elif key != "reranker":
                try:
                    params[key] = json.loads(raw)
                except ValueError as exc:
                    raise InvalidArgument(
                        f"rerank function param {key}={raw!r} is not a number/list"
                    ) from exc
        weights = params.get("weights")
        if (
            kind == "weighted"
            and isinstance(weights, list)
            and any(isinstance(w, int | float) and not 0 <= w <= 1 for w in weights)
        ):
            raise InvalidArgument(f"rank param weight should be in range [0, 1], got {weights}")
        return cls.parse(kind, params, n_requests)

    def fuse(
        self,
        results: Sequence[tuple[Sequence[Any], np.ndarray]],
        metrics: Sequence[str],
        limit: int,
        offset: int,
    ) -> tuple[list[Any], np.ndarray, list[tuple[int, int]]]:
        """Fuse one query's per-request hits ``(ids, distances)``.

        Returns the ids, their fused scores (best first) and, for each, where it was first
        found as ``(request index, position)`` so its output fields can be taken from there.
        """
        scores: dict[Any, float] = {}
        origin: dict[Any, tuple[int, int]] = {}
        similar = [m.upper() in _SIMILARITIES for m in metrics]
        mixed = any(similar) and not all(similar)
        descending = self.strategy == "rrf" or self.norm_score or mixed or all(similar)
        for i, (ids, dist) in enumerate(results):
            if self.strategy == "rrf":
                contrib = 1.0 / (self.k + np.arange(1, len(ids) + 1, dtype=np.float64))
            else:
                contrib = self.weights[i] * _normalize(
                    np.asarray(dist, dtype=np.float64), metrics[i], self.norm_score, mixed
                )
            for pos, (pk, c) in enumerate(zip(ids, contrib.tolist(), strict=True)):
                scores[pk] = scores.get(pk, 0.0) + c
                origin.setdefault(pk, (i, pos))
        sign = -1.0 if descending else 1.0
        ranked = sorted(scores.items(), key=lambda kv: sign * kv[1])[offset : offset + limit]
        ids = [pk for pk, _ in ranked]
        return ids, np.array([s for _, s in ranked], dtype=np.float32), [origin[pk] for pk in ids]


_SIMILARITIES = frozenset({"COSINE", "IP", "BM25"})  # larger is better; every other metric is a distance


def _normalize(d: np.ndarray, metric: str, norm: bool, mixed: bool) -> np.ndarray:
    metric = metric.upper()
    if not norm:
        return 1.0 - 2.0 * np.arctan(d) / math.pi if mixed and metric not in _SIMILARITIES else d
    if metric == "COSINE":
        return (1.0 + d) / 2.0
    if metric == "IP":
        return 0.5 + np.arctan(d) / math.pi
    if metric == "BM25":
        return 2.0 * np.arctan(d) / math.pi
    return 1.0 - 2.0 * np.arctan(d) / math.pi
