"""Function rerankers and function chains through pymilvus, on a real broker and real walvus processes.

Every reranked result is checked against a computation done here: exact vector distances over
all rows, Milvus's decay formulas, and the rankers' definitions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymilvus import (
    AnnSearchRequest,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    RRFRanker,
    WeightedRanker,
)
from pymilvus.function_chain import FunctionChain, FunctionChainStage, col, fn

from tests.procs import Deployment

pytestmark = pytest.mark.integration
N, DIM = 300, 8


@pytest.fixture(scope="module")
def dep(kafka_bootstrap, tmp_path_factory):
    d = Deployment(kafka_bootstrap, tmp_path_factory.mktemp("rerank"))
    d.start("streams", "indexer", "gateway")
    yield d
    d.close()


@pytest.fixture(scope="module")
def data(dep):
    client = MilvusClient(dep.uri)
    rng = np.random.default_rng(11)
    vecs = rng.random((N, DIM), dtype=np.float32)
    ts = rng.integers(0, 1000, N)
    pop = rng.random(N)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("l2v", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("ipv", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("ts", DataType.INT64)
    schema.add_field("pop", DataType.DOUBLE)
    schema.add_field("title", DataType.VARCHAR, max_length=16)
    idx = client.prepare_index_params()
    idx.add_index("l2v", index_type="FLAT", metric_type="L2")
    idx.add_index("ipv", index_type="FLAT", metric_type="IP")
    client.create_collection("rr", schema=schema, index_params=idx, consistency_level="Strong")
    rows = [
        {"id": i, "l2v": vecs[i], "ipv": vecs[i], "ts": int(ts[i]), "pop": float(pop[i]), "title": f"t{i}"}
        for i in range(N)
    ]
    client.insert("rr", rows[: N // 2])
    client.flush("rr")  # half sealed, half growing
    client.insert("rr", rows[N // 2 :])
    yield client, vecs, ts, pop, rng
    client.close()


def _decay(function: str, v: float, origin: float, scale: float, offset: float, decay: float) -> float:
    d = max(0.0, abs(v - origin) - offset)
    if function == "gauss":
        return math.exp(d * d * math.log(decay) / (scale * scale))
    if function == "exp":
        return decay ** (d / scale)
    s = scale / (1 - decay)
    return max(0.0, (s - d) / s)


def _exact(vecs: np.ndarray, q: np.ndarray, metric: str, k: int) -> list[tuple[int, float, float]]:
    """Top-k (id, raw distance, decay similarity) by exact search."""
    if metric == "L2":
        d = ((vecs - q) ** 2).sum(axis=1)
        order = np.argsort(d, kind="stable")[:k]
        return [(int(i), float(d[i]), 1 - 2 * math.atan(float(d[i])) / math.pi) for i in order]
    d = vecs @ q
    order = np.argsort(-d, kind="stable")[:k]
    return [(int(i), float(d[i]), float(d[i])) for i in order]


def _ranker(**params) -> Function:
    return Function(name="rr", input_field_names=["ts"], function_type=FunctionType.RERANK, params=params)


@pytest.mark.parametrize(("function", "metric"), [("gauss", "L2"), ("exp", "IP"), ("linear", "L2")])
def test_decay_search_equals_reference(data, function, metric):
    client, vecs, ts, _, rng = data
    q = rng.random(DIM, dtype=np.float32)
    params = {
        "reranker": "decay",
        "function": function,
        "origin": 500,
        "scale": 200,
        "offset": 50,
        "decay": 0.4,
    }
    field = "l2v" if metric == "L2" else "ipv"
    res = client.search(
        "rr", [q], anns_field=field, limit=5, offset=2, ranker=_ranker(**params), output_fields=["title"]
    )
    cands = _exact(vecs, q, metric, 7)
    ref = sorted(
        ((s * _decay(function, ts[i], 500, 200, 50, 0.4), i) for i, _, s in cands), key=lambda x: -x[0]
    )
    assert [h["id"] for h in res[0]] == [i for _, i in ref[2:7]]
    assert [h["distance"] for h in res[0]] == pytest.approx([s for s, _ in ref[2:7]], rel=1e-4)
    assert [h["entity"] for h in res[0]] == [{"title": f"t{i}"} for _, i in ref[2:7]]  # ts is not output


def test_decay_hybrid_search_takes_the_best_similarity(data):
    client, vecs, ts, _, rng = data
    q1, q2 = rng.random(DIM, dtype=np.float32), rng.random(DIM, dtype=np.float32)
    reqs = [
        AnnSearchRequest([q1], "l2v", {"metric_type": "L2"}, limit=10),
        AnnSearchRequest([q2], "ipv", {"metric_type": "IP"}, limit=10),
    ]
    params = {"reranker": "decay", "function": "gauss", "origin": 0, "scale": 300}
    res = client.hybrid_search("rr", reqs, ranker=_ranker(**params), limit=6, output_fields=["ts"])
    best: dict[int, float] = {}
    for i, _, s in _exact(vecs, q1, "L2", 10) + _exact(vecs, q2, "IP", 10):
        best[i] = max(best.get(i, -math.inf), s)
    ref = sorted(
        ((s * _decay("gauss", ts[i], 0, 300, 0, 0.5), i) for i, s in best.items()), key=lambda x: -x[0]
    )
    assert [h["id"] for h in res[0]] == [i for _, i in ref[:6]]
    assert [h["distance"] for h in res[0]] == pytest.approx([s for s, _ in ref[:6]], rel=1e-4)
    assert [h["entity"]["ts"] for h in res[0]] == [int(ts[i]) for _, i in ref[:6]]


def test_rrf_and_weighted_functions_equal_the_rankers(data):
    client, _, _, _, rng = data
    q1, q2 = rng.random(DIM, dtype=np.float32), rng.random(DIM, dtype=np.float32)
    reqs = [
        AnnSearchRequest([q1], "l2v", {"metric_type": "L2"}, limit=10),
        AnnSearchRequest([q2], "ipv", {"metric_type": "IP"}, limit=10),
    ]

    def ranked(r) -> list[tuple[int, float]]:
        return [(h["id"], h["distance"]) for h in client.hybrid_search("rr", reqs, ranker=r, limit=8)[0]]

    rrf = Function(
        name="f", input_field_names=[], function_type=FunctionType.RERANK, params={"reranker": "rrf", "k": 20}
    )
    assert ranked(rrf) == ranked(RRFRanker(20))
    weighted = Function(
        name="f",
        input_field_names=[],
        function_type=FunctionType.RERANK,
        params={"reranker": "weighted", "weights": [0.3, 0.7], "norm_score": True},
    )
    assert ranked(weighted) == ranked(WeightedRanker(0.3, 0.7, norm_score=True))
    # in a plain search, RRF ranks the one request's hits: 1 / (k + rank)
    res = client.search("rr", [q1], anns_field="l2v", limit=4, ranker=rrf)
    plain = client.search("rr", [q1], anns_field="l2v", limit=4)
    assert [h["id"] for h in res[0]] == [h["id"] for h in plain[0]]
    assert [h["distance"] for h in res[0]] == pytest.approx([1 / 21, 1 / 22, 1 / 23, 1 / 24], rel=1e-6)


def test_function_chain_rerank(data):
    client, vecs, ts, pop, rng = data
    q = rng.random(DIM, dtype=np.float32)
    chain = (
        FunctionChain(FunctionChainStage.L2_RERANK)
        .map("fresh", fn.decay(col("ts"), function="exp", origin=1000, scale=400, decay=0.5))
        .map(
            "$score",
            fn.num_combine(col("$score"), col("fresh"), col("pop"), mode="weighted", weights=[0.6, 0.3, 0.1]),
        )
        .map("$score", fn.round_decimal(col("$score"), decimal=4))
        .sort(col("$score"), desc=True, tie_break_col=col("$id"))
        .limit(4)
    )
    res = client.search("rr", [q], anns_field="ipv", limit=8, function_chains=chain, output_fields=["pop"])
    ref = sorted(
        (
            (round(0.6 * d + 0.3 * _decay("exp", ts[i], 1000, 400, 0, 0.5) + 0.1 * pop[i], 4), i)
            for i, d, _ in _exact(vecs, q, "IP", 8)
        ),
        key=lambda x: (-x[0], x[1]),
    )
    assert [h["id"] for h in res[0]] == [i for _, i in ref[:4]]
    assert [h["distance"] for h in res[0]] == pytest.approx([s for s, _ in ref[:4]], abs=1e-4)
    assert [h["entity"]["pop"] for h in res[0]] == pytest.approx([pop[i] for _, i in ref[:4]])


def test_unsupported_rerankers_are_refused(data):
    client, _, _, _, rng = data
    q = rng.random(DIM, dtype=np.float32)
    model = Function(
        name="m",
        input_field_names=["title"],
        function_type=FunctionType.RERANK,
        params={"reranker": "model", "provider": "tei", "queries": ["x"], "endpoint": "http://localhost:1"},
    )
    with pytest.raises(MilvusException, match="network"):
        client.search("rr", [q], anns_field="l2v", limit=3, ranker=model)
    bad = Function(
        name="d",
        input_field_names=["title"],
        function_type=FunctionType.RERANK,
        params={"reranker": "decay", "function": "gauss", "origin": 0, "scale": 1},
    )
    with pytest.raises(MilvusException, match="numeric"):
        client.search("rr", [q], anns_field="l2v", limit=3, ranker=bad)
    with pytest.raises(MilvusException, match="grouping"):
        client.search(
            "rr",
            [q],
            anns_field="l2v",
            limit=3,
            ranker=_ranker(reranker="decay", function="exp", origin=0, scale=10),
            group_by_field="title",
        )
