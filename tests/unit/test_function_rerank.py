"""Function rerankers and function chains, against references computed here with plain math."""

from __future__ import annotations

import math
import time

import numpy as np
import pyarrow as pa
import pytest
from pymilvus import Function, FunctionType
from pymilvus.client.prepare import Prepare
from pymilvus.function_chain import FunctionChain as PyChain
from pymilvus.function_chain import FunctionChainStage, col, fn

from gateway.function_chain import FunctionChain
from gateway.function_rerank import (
    DecayRanker,
    FunctionRerankError,
    FusionRanker,
    decay_scores,
    parse_function_score,
)
from schemas.collection import CollectionSchema, FieldSchema
from schemas.exceptions import InvalidArgument
from schemas.types import DataType

SCHEMA = CollectionSchema(
    fields=(
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("v", DataType.FLOAT_VECTOR, dim=4),
        FieldSchema("ts", DataType.INT64),
        FieldSchema("pop", DataType.DOUBLE),
        FieldSchema("title", DataType.VARCHAR, max_length=32),
    )
)


def _ref_decay(function: str, v: float, origin: float, scale: float, offset: float, decay: float) -> float:
    d = max(0.0, abs(v - origin) - offset)
    if function == "gauss":
        return math.exp(d * d * math.log(decay) / (scale * scale))
    if function == "exp":
        return decay ** (d / scale)
    s = scale / (1 - decay)
    return max(0.0, (s - d) / s)


def _score(params: dict, inputs: list[str] | None = None, n: int = 1):
    f = Function(name="r", function_type=FunctionType.RERANK, input_field_names=inputs or [], params=params)
    return parse_function_score(Prepare.ranker_to_function_score(f), SCHEMA, n)


@pytest.mark.parametrize("function", ["gauss", "exp", "linear"])
def test_decay_scores_equal_the_formulas(function):
    rng = np.random.default_rng(1)
    values = rng.uniform(-500, 1500, 200)
    got = decay_scores(function, values, 100.0, 250.0, 30.0, 0.3)
    want = [_ref_decay(function, float(v), 100.0, 250.0, 30.0, 0.3) for v in values]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # the score at origin +- offset is 1, at origin + offset + scale it is `decay`
    np.testing.assert_allclose(
        decay_scores(function, np.array([70.0, 130.0, 380.0]), 100, 250, 30, 0.3), [1, 1, 0.3]
    )


def test_decay_rerank_hybrid_takes_the_best_similarity_times_decay():
    r = _score({"reranker": "decay", "function": "gauss", "origin": 0, "scale": 100, "offset": 10}, ["ts"], 2)
    assert isinstance(r, DecayRanker) and r.decay == 0.5
    ts = {1: 0, 2: 50, 3: 300, 4: 20, 5: 80}
    req_a = ([1, 2, 3], np.array([0.9, 0.8, 0.7], np.float32), pa.table({"ts": [ts[1], ts[2], ts[3]]}))
    req_b = ([4, 2, 5], np.array([0.2, 1.5, 3.0], np.float32), pa.table({"ts": [ts[4], ts[2], ts[5]]}))
    ids, scores, origin = r.fuse([req_a, req_b], ["IP", "L2"], limit=3, offset=1)
    sims: dict[int, float] = {}
    for pk, d in zip(req_a[0], req_a[1], strict=True):
        sims[pk] = max(sims.get(pk, -1e9), float(d))
    for pk, d in zip(req_b[0], req_b[1], strict=True):
        sims[pk] = max(sims.get(pk, -1e9), 1 - 2 * math.atan(float(d)) / math.pi)
    ref = sorted(
        ((s * _ref_decay("gauss", ts[pk], 0, 100, 10, 0.5), pk) for pk, s in sims.items()),
        key=lambda x: -x[0],
    )
    assert ids == [pk for _, pk in ref][1:4]
    np.testing.assert_allclose(scores, [s for s, _ in ref][1:4], rtol=1e-6)
    where = {1: (0, 0), 2: (0, 1), 3: (0, 2), 4: (1, 0), 5: (1, 2)}
    assert origin == [where[pk] for pk in ids]


def test_decay_rerank_string_keys_and_nulls_score_zero():
    r = _score({"reranker": "decay", "function": "linear", "origin": 10, "scale": 5}, ["pop"])
    hits = (["a", "b", "c"], np.array([0.5, 0.6, 0.7], np.float32), pa.table({"pop": [10.0, None, 12.0]}))
    ids, scores, _ = r.fuse([hits], ["COSINE"], limit=10, offset=0)
    assert ids == ["c", "a", "b"]
    np.testing.assert_allclose(scores, [0.7 * 0.8, 0.5, 0.0], rtol=1e-6)


def test_rrf_and_weighted_as_functions():
    rrf = _score({"reranker": "rrf", "k": 10}, n=2)
    assert isinstance(rrf, FusionRanker) and rrf.ranker.k == 10
    a = ([1, 2], np.array([0.9, 0.1], np.float32), pa.table({}))
    b = ([2, 3], np.array([0.5, 0.4], np.float32), pa.table({}))
    ids, scores, _ = rrf.fuse([a, b], ["IP", "IP"], 3, 0)
    assert ids == [2, 1, 3]
    np.testing.assert_allclose(scores, [1 / 12 + 1 / 11, 1 / 11, 1 / 12], rtol=1e-6)
    w = _score({"reranker": "weighted", "weights": [0.2, 0.8], "norm_score": False}, n=2)
    ids, scores, _ = w.fuse([a, b], ["IP", "IP"], 3, 0)
    assert ids == [2, 3, 1]
    np.testing.assert_allclose(scores, [0.02 + 0.4, 0.32, 0.18], rtol=1e-6)


@pytest.mark.parametrize(
    ("params", "inputs", "message"),
    [
        ({"reranker": "model", "provider": "vllm", "queries": ["q"]}, ["title"], "network"),
        ({"reranker": "cohere"}, [], "unsupported reranker"),
        ({"reranker": ""}, [], "reranker name not specified"),
        ({"reranker": "decay", "function": "gauss", "origin": 0, "scale": 1}, ["title"], "numeric"),
        (
            {"reranker": "decay", "function": "gauss", "origin": 0, "scale": 1},
            ["nope"],
            "not in the collection",
        ),
        ({"reranker": "decay", "function": "gauss", "origin": 0, "scale": 1}, [], "one input field"),
        ({"reranker": "decay", "function": "cubic", "origin": 0, "scale": 1}, ["ts"], "gauss, exp, linear"),
        ({"reranker": "decay", "function": "exp", "origin": 0, "scale": 0}, ["ts"], "scale"),
        ({"reranker": "decay", "function": "exp", "origin": 0, "scale": 1, "decay": 1}, ["ts"], "decay"),
        ({"reranker": "decay", "function": "exp", "scale": 1}, ["ts"], "origin"),
        ({"reranker": "decay", "function": "exp", "origin": 0, "scale": 1, "boost": 2}, ["ts"], "boost"),
        ({"reranker": "weighted", "weights": [1.0]}, [], "mismatch"),
    ],
)
def test_bad_rerank_functions_are_refused(params, inputs, message):
    with pytest.raises(InvalidArgument, match=message):  # FunctionRerankError is one
        _score(params, inputs, n=2 if params["reranker"] == "weighted" else 1)


def _chain(c: PyChain) -> FunctionChain:
    return FunctionChain.parse([c.to_proto()], SCHEMA)


def test_function_chain_decay_combine_round_sort_limit():
    now = int(time.time())
    chain = _chain(
        PyChain(FunctionChainStage.L2_RERANK)
        .map("fresh", fn.decay(col("ts"), function="exp", origin=now, scale=86400, offset=0, decay=0.5))
        .map(
            "$score",
            fn.num_combine(col("$score"), col("fresh"), col("pop"), mode="weighted", weights=[0.7, 0.2, 0.1]),
        )
        .map("$score", fn.round_decimal(col("$score"), decimal=4))
        .sort(col("$score"), desc=True, tie_break_col=col("$id"))
        .limit(3)
    )
    assert chain.input_fields == ["ts", "pop"]
    ts = [now - 60, now - 3600, now - 86400, now - 7 * 86400]
    pop = [0.1, 0.95, 0.7, 0.3]
    dist = np.array([0.9, 0.8, 0.85, 0.95], np.float32)
    table = pa.table({"ts": ts, "pop": pop})
    ids, scores, origin = chain.fuse([([10, 11, 12, 13], dist, table)], ["IP"], limit=10, offset=0)
    ref = [
        (round(0.7 * float(d) + 0.2 * _ref_decay("exp", t, now, 86400, 0, 0.5) + 0.1 * p, 4), pk, i)
        for i, (pk, d, t, p) in enumerate(zip([10, 11, 12, 13], dist, ts, pop, strict=True))
    ]
    ref.sort(key=lambda x: (-x[0], x[1]))
    assert ids == [pk for _, pk, _ in ref[:3]]
    np.testing.assert_allclose(scores, [s for s, _, _ in ref[:3]], rtol=1e-6)
    assert origin == [(0, i) for _, _, i in ref[:3]]


def test_function_chains_refuse_what_walvus_does_not_run():
    with pytest.raises(FunctionRerankError, match="stage"):
        _chain(PyChain(FunctionChainStage.L0_RERANK).limit(3))
    with pytest.raises(FunctionRerankError, match="xgboost"):
        _chain(PyChain(FunctionChainStage.L2_RERANK).map("x", fn.xgboost(col("pop"), model_resource="m")))
    with pytest.raises(FunctionRerankError, match="unknown column"):
        _chain(PyChain(FunctionChainStage.L2_RERANK).sort(col("nope")))
