"""Search answers across the gateway -> searcher hop: ``searcher.wire`` and ``searcher.merge``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa

from schemas.sparse import SparseQueries
from searcher.merge import merge_hits
from searcher.wire import (
    decode_hits,
    decode_request,
    encode_hits,
    encode_query,
    encode_search,
    metric_of,
    shards_of,
)
from walvus.searcher import Consistency, ConsistencyLevel, Hits, QueryRequest, SearchRequest


def _hits(ids: list[int], base: float) -> Hits:
    d = np.arange(len(ids), dtype=np.float32) + base
    return Hits(ids, d, pa.table({"tag": pa.array([i % 7 for i in ids], pa.int64())}))


def test_an_answer_comes_back_query_by_query_with_its_fields() -> None:
    sent = [_hits([5, 3, 9], 0.0), _hits([], 0.0), _hits([1], 2.0)]
    table = encode_hits(sent, frozenset({0, 1}), "L2")
    assert shards_of(table) == {0, 1} and metric_of(table) == "L2"
    got = decode_hits(table)
    assert [h.ids for h in got] == [[5, 3, 9], [], [1]]
    assert [h.distances.tolist() for h in got] == [[0.0, 1.0, 2.0], [], [2.0]]
    assert got[0].fields.column("tag").to_pylist() == [5, 3, 2]
    shuffled = table.take(pa.array([3, 0, 1, 2]))  # rows not grouped by query still decode
    assert [h.ids for h in decode_hits(shuffled)] == [[5, 3, 9], [], [1]]


def test_one_searchers_answer_stands_and_several_are_merged() -> None:
    req = SearchRequest("c", None, np.zeros((1, 2), np.float32), 2)
    only = [[_hits([4, 2], 0.0)]]
    assert merge_hits(only, 1, "L2", req) is only[0]
    merged = merge_hits([[_hits([4, 2], 0.5)], [_hits([8, 6], 0.0)]], 1, "L2", req)
    assert merged[0].ids == [8, 4] and merged[0].distances.tolist() == [0.0, 0.5]
    paged = merge_hits(only, 1, "L2", SearchRequest("c", None, req.queries, 1, offset=1))
    assert paged[0].ids == [2]


def test_a_request_crosses_the_hop_field_for_field() -> None:
    queries = np.arange(6, dtype=np.float32).reshape(2, 3)
    req = SearchRequest(
        "c",
        "v",
        queries,
        7,
        metric="IP",
        params={"ef": 64, "nested": {"a": [1, 2]}, "bound": float("inf"), "low": float("-inf")},
        filter="n > {x}",
        filter_params={"x": 2**70},  # past 64 bits
        partitions=["p"],
        output_fields=["n"],
        offset=3,
        group_by_field="g",
        group_size=2,
        consistency=Consistency(ConsistencyLevel.BOUNDED, 5, True, ((0, 9), (1, 4))),
        collection_id=470893213226369024,
        shards=frozenset({1, 0}),
        bm25_stats=[(3, 1.5, [1.0, 2.0])],
    )
    got = decode_request(encode_search(req))
    assert isinstance(got, SearchRequest)
    assert got.queries.tobytes() == queries.tobytes() and got.queries.shape == (2, 3)
    assert replace(got, queries=queries) == req


def test_sparse_queries_and_queries_cross_the_hop() -> None:
    sparse = SparseQueries(
        [
            (np.array([1, 5], np.int64), np.array([0.5, 2.0], np.float32)),
            (np.zeros(0, np.int64), np.zeros(0, np.float32)),
        ]
    )
    got = decode_request(encode_search(SearchRequest("c", "s", sparse, 3)))
    assert [(i.tolist(), v.tolist()) for i, v in got.queries.items] == [([1, 5], [0.5, 2.0]), ([], [])]
    q = QueryRequest(
        "c",
        filter="n in [1, 2]",
        output_fields=["n"],
        limit=5,
        consistency=Consistency(ConsistencyLevel.STRONG),
    )
    assert decode_request(encode_query(q)) == q
