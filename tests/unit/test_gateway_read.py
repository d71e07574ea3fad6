"""Search, hybrid search, query and the iterators, parsed by the real pymilvus client."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
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
from pymilvus.client.prepare import Prepare
from pymilvus.grpc_gen import milvus_pb2_grpc

from tests.memory import RunningGateway, running_gateway
from walvus.searcher import ConsistencyLevel

_names = itertools.count()
N = 40


def unique(prefix: str = "r") -> str:
    return f"{prefix}_{next(_names)}"


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with running_gateway() as gw:
        yield gw


def vec(i: int) -> list[float]:
    return [float(i), 1.0, float(i % 3), 0.0]


@pytest.fixture(scope="module")
def coll(client: MilvusClient) -> str:
    """Rows 0..N-1: L2 on ``vec``, IP on ``half``, HAMMING on ``bits``, scalars, JSON, arrays, dynamic."""
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    s.add_field("half", DataType.FLOAT16_VECTOR, dim=4)
    s.add_field("bits", DataType.BINARY_VECTOR, dim=16)
    s.add_field("color", DataType.VARCHAR, max_length=8)
    s.add_field("age", DataType.INT32, nullable=True)
    s.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=8)
    s.add_field("doc", DataType.JSON)
    ip = client.prepare_index_params()
    ip.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 8})
    ip.add_index("half", index_type="FLAT", metric_type="IP")
    ip.add_index("bits", index_type="BIN_FLAT", metric_type="HAMMING")
    name = unique("main")
    client.create_collection(name, schema=s, index_params=ip)
    client.create_partition(name, "odd")
    rows = [
        {
            "id": i,
            "vec": vec(i),
            "half": np.array([1, i / 10, 0, 0], dtype=np.float16),
            "bits": bytes([i, 0]),
            "color": ["red", "green", "blue"][i % 3],
            "age": None if i % 5 == 0 else i,
            "tags": [f"t{i % 2}", "all"],
            "doc": {"n": i, "even": i % 2 == 0},
            "score": i * 1.5,
        }
        for i in range(N)
    ]
    client.insert(name, [r for r in rows if r["id"] % 2 == 0])
    client.insert(name, [r for r in rows if r["id"] % 2], partition_name="odd")
    return name


def test_search_ids_distances_and_output_fields(client: MilvusClient, coll: str) -> None:
    res = client.search(
        coll, [vec(7), vec(20)], anns_field="vec", limit=3, output_fields=["color", "doc", "score"]
    )
    assert len(res) == 2
    hits = res[0]
    assert [h["id"] for h in hits] == [7, 6, 8]
    assert hits[0]["distance"] == 0.0 and hits[1]["distance"] == pytest.approx(2.0)  # squared L2, best first
    assert hits[0]["entity"] == {"color": "green", "doc": {"n": 7, "even": False}, "score": 10.5}
    assert res[1][0]["id"] == 20


def test_search_returns_vectors_arrays_and_nulls(client: MilvusClient, coll: str) -> None:
    (hits,) = client.search(coll, [vec(5)], anns_field="vec", limit=1, output_fields=["*"])
    e = hits[0]["entity"]
    assert e["vec"] == vec(5) and e["tags"] == ["t1", "all"] and e["age"] is None and e["score"] == 7.5
    assert np.frombuffer(e["half"], dtype=np.float16).tolist() == [1.0, np.float16(0.5), 0.0, 0.0]
    assert e["bits"] == bytes([5, 0])


def test_search_other_metrics_and_filters(client: MilvusClient, coll: str) -> None:
    (hits,) = client.search(
        coll,
        [np.array([1, 1, 0, 0], dtype=np.float16)],
        anns_field="half",
        limit=2,
        filter="age > {a}",
        filter_params={"a": 30},
    )
    assert [h["id"] for h in hits] == [39, 38]  # IP: larger is better
    assert hits[0]["distance"] > hits[1]["distance"]
    (hits,) = client.search(coll, [bytes([3, 0])], anns_field="bits", limit=2, filter='color == "red"')
    assert hits[0]["id"] == 3 and hits[0]["distance"] == 0.0
    assert hits[1]["distance"] == 2.0  # HAMMING: 3 ^ 0 and 3 ^ 6 both differ in two bits


def test_search_partitions_offset_round_decimal(client: MilvusClient, coll: str) -> None:
    (hits,) = client.search(coll, [vec(10)], anns_field="vec", limit=2, partition_names=["odd"])
    assert {h["id"] for h in hits} == {9, 11}
    (hits,) = client.search(coll, [vec(10)], anns_field="vec", limit=2, offset=1)
    assert [h["id"] for h in hits][0] in (9, 11)
    (hits,) = client.search(coll, [vec(10)], anns_field="vec", limit=1, filter='json_contains(tags, "t1")')
    assert hits[0]["id"] % 2 == 1


def test_search_request_reaches_the_searcher(client: MilvusClient, coll: str, gw: RunningGateway) -> None:
    client.search(
        coll,
        [vec(1)],
        anns_field="vec",
        limit=4,
        search_params={"params": {"ef": 64}},
        consistency_level="Strong",
        output_fields=["color"],
    )
    req = next(r for kind, r in reversed(gw.searcher.calls) if kind == "search")
    assert req.anns_field == "vec" and req.limit == 4 and req.metric == "L2" and req.params == {"ef": 64}
    assert req.output_fields == ["color"] and req.queries.dtype == np.float32 and req.queries.shape == (1, 4)
    assert req.consistency.level == ConsistencyLevel.STRONG and req.consistency.guarantee_ts == 0


def test_consistency_levels(client: MilvusClient, coll: str, gw: RunningGateway) -> None:
    def last() -> object:
        return next(r for kind, r in reversed(gw.searcher.calls) if kind in ("search", "query")).consistency

    client.query(coll, filter="id < 2", consistency_level="Eventually")
    assert last().level == ConsistencyLevel.EVENTUALLY
    client.query(coll, filter="id < 2")  # collection default: Bounded
    assert last().level == ConsistencyLevel.BOUNDED and last().guarantee_ts == 2
    ts = client._get_connection().insert_rows(coll, [{**_row(100)}]).timestamp
    client.query(coll, filter="id < 2", consistency_level="Session")
    assert last().level == ConsistencyLevel.SESSION and last().guarantee_ts == ts
    client.delete(coll, ids=[100])


def _row(i: int) -> dict:
    return {
        "id": i,
        "vec": vec(i),
        "half": np.zeros(4, dtype=np.float16),
        "bits": bytes(2),
        "color": "x",
        "tags": [],
        "doc": {},
    }


def test_range_search(client: MilvusClient, coll: str) -> None:
    (hits,) = client.search(
        coll,
        [vec(10)],
        anns_field="vec",
        limit=10,
        search_params={"params": {"radius": 3.0, "range_filter": 1.0}},
    )
    assert {h["id"] for h in hits} == {9, 11}  # 1 <= d < 3: d=2 for both neighbours


def test_grouping_search(client: MilvusClient, coll: str) -> None:
    (hits,) = client.search(
        coll, [vec(10)], anns_field="vec", limit=3, group_by_field="color", output_fields=["id"]
    )
    colors = [h["entity"]["color"] for h in hits]
    assert sorted(colors) == ["blue", "green", "red"]


def test_search_by_primary_keys(client: MilvusClient, coll: str) -> None:
    res = client.search(coll, ids=[12], anns_field="vec", limit=1)
    assert res[0][0]["id"] == 12


def test_hybrid_search(client: MilvusClient, coll: str) -> None:
    reqs = [
        AnnSearchRequest([vec(4)], "vec", {}, limit=5),
        AnnSearchRequest([np.array([1, 3.9, 0, 0], dtype=np.float16)], "half", {}, limit=5),
    ]
    (hits,) = client.hybrid_search(coll, reqs, RRFRanker(60), limit=3, output_fields=["color"])
    assert hits[0]["id"] in (4, 39) and len(hits) == 3
    assert hits[0]["distance"] >= hits[1]["distance"] >= hits[2]["distance"]
    assert all("color" in h["entity"] for h in hits)
    (hits,) = client.hybrid_search(coll, reqs, WeightedRanker(1.0, 0.0), limit=2)
    assert hits[0]["id"] == 4 and hits[0]["distance"] == pytest.approx(1.0)  # L2 0 -> normalised 1
    with pytest.raises(MilvusException, match="length of weights param mismatch"):
        client.hybrid_search(coll, reqs, WeightedRanker(1.0), limit=2)


def test_hybrid_search_with_rerank_functions(client: MilvusClient, coll: str) -> None:
    """Function(type=RERANK) rrf/weighted rank as the classic rankers; model and boost rerankers are refused."""
    reqs = [
        AnnSearchRequest([vec(4)], "vec", {}, limit=5),
        AnnSearchRequest([np.array([1, 3.9, 0, 0], dtype=np.float16)], "half", {}, limit=5),
    ]

    def rerank(**params: object) -> Function:
        return Function(name="r", input_field_names=[], function_type=FunctionType.RERANK, params=params)

    classic = client.hybrid_search(coll, reqs, RRFRanker(20), limit=3)[0]
    fn = client.hybrid_search(coll, reqs, rerank(reranker="rrf", k=20), limit=3)[0]
    assert [h["id"] for h in fn] == [h["id"] for h in classic]
    assert [h["distance"] for h in fn] == pytest.approx([h["distance"] for h in classic])
    normed = client.hybrid_search(
        coll, reqs, rerank(reranker="weighted", weights=[1.0, 0.0], norm_score=True), limit=2
    )
    assert normed[0][0]["id"] == 4 and normed[0][0]["distance"] == pytest.approx(1.0)  # L2 0 -> 1
    raw = client.hybrid_search(coll, reqs, rerank(reranker="weighted", weights=[0.0, 1.0]), limit=1)
    ip = client.search(coll, [[1, 3.9, 0, 0]], anns_field="half", limit=1)[0][0]
    assert raw[0][0]["id"] == ip["id"] and raw[0][0]["distance"] == pytest.approx(ip["distance"], rel=1e-3)
    with pytest.raises(MilvusException, match="decay reranker needs exactly one input field"):
        client.hybrid_search(
            coll, reqs, rerank(reranker="decay", function="gauss", origin=0, scale=1), limit=2
        )
    with pytest.raises(MilvusException, match="network"):
        client.hybrid_search(coll, reqs, rerank(reranker="model", provider="tei", queries=["q"]), limit=2)
    with pytest.raises(MilvusException, match="unsupported reranker 'boost'"):
        client.hybrid_search(coll, reqs, rerank(reranker="boost", weight=2.0), limit=2)
    with pytest.raises(MilvusException, match="length of weights param mismatch"):
        client.hybrid_search(coll, reqs, rerank(reranker="weighted", weights=[1.0]), limit=2)


def test_query_fields_limit_offset_and_dynamic(client: MilvusClient, coll: str) -> None:
    rows = client.query(coll, filter="id < 3", output_fields=["color", "score"])
    assert sorted((r["id"], r["color"], r["score"]) for r in rows) == [
        (0, "red", 0.0),
        (1, "green", 1.5),
        (2, "blue", 3.0),
    ]
    assert set(rows[0]) == {"id", "color", "score"}
    rows = client.query(coll, filter="", limit=5, offset=2, output_fields=["id"])
    assert len(rows) == 5
    got = client.get(coll, ids=[3, 4], output_fields=["*"])
    assert sorted(r["id"] for r in got) == [3, 4] and got[0]["doc"]["n"] in (3, 4) and "score" in got[0]


def test_get_uses_the_key_fast_path(client: MilvusClient, coll: str, gw: RunningGateway) -> None:
    client.get(coll, ids=[5, 6])
    req = next(r for kind, r in reversed(gw.searcher.calls) if kind == "query")
    assert req.ids == [5, 6] and req.filter == ""


def test_count_and_distinct(client: MilvusClient, coll: str) -> None:
    assert client.query(coll, filter="", output_fields=["count(*)"])[0]["count(*)"] == N
    assert client.query(coll, filter="age > 30", output_fields=["count(*)"])[0]["count(*)"] == 8
    colors = client.query(coll, filter="", output_fields=["color"], group_by_fields=["color"])
    assert sorted(r["color"] for r in colors) == ["blue", "green", "red"]
    counts = client.query(coll, filter="", output_fields=["color", "count(*)"], group_by_fields=["color"])
    assert sorted((r["color"], r["count(*)"]) for r in counts) == [("blue", 13), ("green", 13), ("red", 14)]


def test_query_iterator_pages_in_key_order(client: MilvusClient, coll: str) -> None:
    it = client.query_iterator(coll, batch_size=7, filter="id >= 10", output_fields=["color"])
    seen = []
    while page := it.next():
        seen.extend(r["id"] for r in page)
        assert all("color" in r for r in page)
    it.close()
    assert seen == list(range(10, N))


def test_search_iterator_walks_all_results_once(client: MilvusClient, coll: str) -> None:
    it = client.search_iterator(coll, [vec(0)], anns_field="vec", batch_size=6, output_fields=["color"])
    ids, dists = [], []
    while page := it.next():
        ids.extend(h["id"] for h in page)
        dists.extend(h["distance"] for h in page)
    it.close()
    assert sorted(ids) == list(range(N)) and dists == sorted(dists)


@pytest.mark.parametrize(
    ("kwargs", "message", "code"),
    [
        ({"filter": "id >"}, "invalid filter 'id >'", 1100),
        ({"filter": "nope > 1 and"}, "invalid filter", 1100),
        ({"limit": 17000}, r"topk \[17000\] \+ offset \[0\] is invalid", 1100),
        (
            {"search_params": {"metric_type": "IP"}},
            r"metric type not match.*expected=L2\]\[actual=IP\]",
            1100,
        ),
        ({"partition_names": ["nope"]}, r"partition not found\[partition=nope\]", 200),
        ({"output_fields": ["vec", "tags[0"]}, "field tags\\[0 not exist", 1100),
    ],
)
def test_search_errors(client: MilvusClient, coll: str, kwargs: dict, message: str, code: int) -> None:
    with pytest.raises(MilvusException, match=message) as err:
        client.search(coll, [vec(1)], anns_field="vec", **{"limit": 3, **kwargs})
    assert err.value.code == code


def test_search_needs_a_vector_field_name_when_there_are_several(client: MilvusClient, coll: str) -> None:
    with pytest.raises(MilvusException, match="multiple anns_fields exist"):
        client.search(coll, [vec(1)], limit=3)
    with pytest.raises(MilvusException, match=r"the dim \(3\) of field data\(vec\)"):
        client.search(coll, [[1.0, 2.0, 3.0]], anns_field="vec", limit=3)


def test_search_and_query_before_load(client: MilvusClient) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    client.release_collection(name)
    for call in (
        lambda: client.search(name, [[1, 2]], limit=1),
        lambda: client.query(name, filter="id > 0"),
        lambda: client.delete(name, filter="id > 0"),
    ):
        with pytest.raises(MilvusException, match="collection not loaded") as err:
            call()
        assert err.value.code == 101
    client.delete(name, ids=[1])  # deletes by key need no load, as in Milvus


def test_search_only_loaded_partitions(client: MilvusClient, gw: RunningGateway) -> None:
    name = unique()
    client.create_collection(name, dimension=2)
    client.create_partition(name, "p")
    client.insert(name, [{"id": 1, "vector": [1, 1]}])
    client.insert(name, [{"id": 2, "vector": [1, 1]}], partition_name="p")
    client.release_collection(name)
    client.load_partitions(name, ["p"])
    assert [h["id"] for h in client.search(name, [[1, 1]], limit=5)[0]] == [2]
    with pytest.raises(MilvusException, match="partition not loaded") as err:
        client.search(name, [[1, 1]], limit=5, partition_names=["_default"])
    assert err.value.code == 201


def test_empty_query_results_still_carry_fields(client: MilvusClient, coll: str) -> None:
    assert client.query(coll, filter="id > 100000", output_fields=["color", "vec"]) == []
    assert client.search(coll, [vec(1)], anns_field="vec", limit=3, filter="id > 100000") == [[]]


def test_empty_results_are_typed_for_every_field_type(client: MilvusClient) -> None:
    """pymilvus raises "Unknown data type" on a FieldData with no type oneof, so zero rows still name it."""
    s = MilvusClient.create_schema(enable_dynamic_field=True)
    s.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=16)
    kinds = {
        "vec": dict(datatype=DataType.FLOAT_VECTOR, dim=4),
        "half": dict(datatype=DataType.FLOAT16_VECTOR, dim=4),
        "bf": dict(datatype=DataType.BFLOAT16_VECTOR, dim=4),
        "bits": dict(datatype=DataType.BINARY_VECTOR, dim=16),
        "flag": dict(datatype=DataType.BOOL),
        "i8": dict(datatype=DataType.INT8),
        "i16": dict(datatype=DataType.INT16),
        "i32": dict(datatype=DataType.INT32, nullable=True),
        "i64": dict(datatype=DataType.INT64),
        "f32": dict(datatype=DataType.FLOAT),
        "f64": dict(datatype=DataType.DOUBLE, nullable=True),
        "text": dict(datatype=DataType.VARCHAR, max_length=8),
        "doc": dict(datatype=DataType.JSON),
        "words": dict(datatype=DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=8),
        "nums": dict(datatype=DataType.ARRAY, element_type=DataType.DOUBLE, max_capacity=4),
    }
    for name, kw in kinds.items():
        s.add_field(name, **kw)
    ip = client.prepare_index_params()
    for name, metric in (("vec", "L2"), ("half", "IP"), ("bf", "IP"), ("bits", "HAMMING")):
        ip.add_index(name, index_type="BIN_FLAT" if name == "bits" else "FLAT", metric_type=metric)
    name = unique("typed")
    client.create_collection(name, schema=s, index_params=ip)
    for field in [*kinds, "pk", "dynamic_key", "$meta", "*"]:
        assert client.query(name, filter='pk in ["100"]', output_fields=[field]) == [], field
    assert client.query(name, filter='pk in ["100"]') == []
    assert client.get(name, ids=["100"]) == []
    assert client.search(name, [[0.0] * 4], anns_field="vec", limit=3, output_fields=["*"]) == [[]]


def test_query_window_and_empty_filter_limits(client: MilvusClient, coll: str) -> None:
    with pytest.raises(MilvusException, match="empty expression should be used with limit"):
        client.query(coll, filter="")
    with pytest.raises(MilvusException, match=r"invalid max query result window, \(offset\+limit\)"):
        client.query(coll, filter="id > 0", limit=16000, offset=1000)
    with pytest.raises(MilvusException, match=r"offset \[-1\] is invalid, should be gte than 0"):
        client.query(coll, filter="id > 0", limit=2, offset=-1)


def test_a_bad_filter_is_reported_before_unknown_search_params(client: MilvusClient, coll: str) -> None:
    with pytest.raises(MilvusException, match="cannot parse expression: id like 33"):
        client.search(coll, [vec(1)], anns_field="vec", filter="id like 33", search_params={"nlist": 8})
    with pytest.raises(MilvusException, match="parameter 'nlist' is not supported"):
        client.search(coll, [vec(1)], anns_field="vec", filter="id > 0", search_params={"nlist": 8})


def test_an_offset_without_a_limit_skips_matches(client: MilvusClient, coll: str) -> None:
    every = client.query(coll, filter="id in [0, 1, 2]", output_fields=["id"])
    assert sorted(r["id"] for r in every) == [0, 1, 2]
    assert len(client.query(coll, filter="id in [0, 1, 2]", output_fields=["id"], offset=1)) == 2
    assert client.query(coll, filter="id in [0, 1, 2]", output_fields=["id"], offset=100) == []
    assert len(client.query(coll, filter="id in [0, 1, 2]", output_fields=["id"], offset=1, limit=5)) == 2


def test_unexpected_searcher_failure_is_reported_not_hidden(
    client: MilvusClient, coll: str, gw: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gw.searcher.fail = RuntimeError("disk on fire")
    try:
        with pytest.raises(
            MilvusException, match="unexpected error in Search: RuntimeError: disk on fire"
        ) as err:
            client.search(coll, [vec(1)], anns_field="vec", limit=1)
    finally:
        gw.searcher.fail = None
    assert err.value.code == 65535
    assert any(
        "disk on fire" in r.getMessage() and r.exc_info for r in caplog.records if r.name == "gateway.errors"
    )


def test_order_by_orders_and_refuses_what_cannot_be_ordered(client: MilvusClient, coll: str) -> None:
    rows = client.query(
        coll, filter="id < 5", output_fields=["age"], order_by=[{"field": "age", "order": "desc"}]
    )
    ages = [r["age"] for r in rows]
    known = [a for a in ages if a is not None]
    assert ages == sorted(known, reverse=True) + [None] * (5 - len(known))  # nulls last
    with pytest.raises(MilvusException, match="asc or desc") as err:
        client.query(coll, filter="id < 5", order_by_fields=["age:sideways"])
    assert err.value.code == 1100
    with pytest.raises(MilvusException, match="cannot order by"):
        client.search(coll, [vec(1)], anns_field="vec", limit=3, order_by_fields=[{"field": "vec"}])
    with pytest.raises(MilvusException, match="not a field name"):
        client.query(coll, filter="id < 5", order_by_fields=["a b:asc"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"search_params": {"params": {"search_list": 30}}}, "parameter 'search_list' is not supported"),
        ({"search_params": {"nprob": 8}}, "parameter 'nprob' is not supported"),
        ({"group_by_fields": ["color", "age"]}, "grouping search by several fields is not supported"),
        ({"search_params": {"hints": "use_magic"}}, "hints: use_magic not supported"),
        ({"time_fields": "fortnight"}, "invalid time_fields"),
        ({"timezone": "Mars/Olympus"}, "invalid timezone"),
    ],
)
def test_unknown_search_params_are_refused(
    client: MilvusClient, coll: str, kwargs: dict, message: str
) -> None:
    with pytest.raises(MilvusException, match=message) as err:
        client.search(coll, [vec(1)], anns_field="vec", limit=3, **kwargs)
    assert err.value.code == 1100


def test_known_search_params_and_hints_keep_working(client: MilvusClient, coll: str) -> None:
    params = {
        "metric_type": "L2",
        "hints": "iterative_filter",
        "params": {"ef": 16},
        "page_retain_order": True,
    }
    hits = client.search(coll, [vec(1)], anns_field="vec", limit=3, search_params=params, filter="id < 10")
    assert hits[0][0]["id"] == 1


def test_unknown_query_and_rank_params_are_refused(client: MilvusClient, coll: str) -> None:
    with pytest.raises(MilvusException, match="invalid time_fields"):
        client.query(coll, filter="id < 5", time_fields="year, fortnight")
    with pytest.raises(MilvusException, match="invalid timezone"):
        client.query(coll, filter="id < 5", timezone="Mars/Olympus")
    reqs = [AnnSearchRequest([vec(1)], "vec", {"params": {"ef": 8}}, limit=3)]
    with pytest.raises(MilvusException, match="grouping hybrid search is not supported"):
        client.hybrid_search(coll, reqs, RRFRanker(), limit=3, rank_group_scorer="max")
    bad = [AnnSearchRequest([vec(1)], "vec", {"params": {"nlist_search": 8}}, limit=3)]
    with pytest.raises(MilvusException, match="parameter 'nlist_search' is not supported"):
        client.hybrid_search(coll, bad, RRFRanker(), limit=3)


def test_index_knobs_at_the_top_level_as_the_node_sdk_sends_them(gw: RunningGateway, coll: str) -> None:
    """The Node SDK copies ``params`` (ef, radius...) next to topk; they are understood there too,
    and an unknown key there is refused as it is inside ``params``."""
    req = Prepare.search_requests_with_expr(coll, "vec", {"params": {"ef": 16}}, 3, data=[vec(1)])
    req.search_params.add(key="ef", value="16")
    with grpc.insecure_channel(gw.uri.removeprefix("http://")) as channel:
        stub = milvus_pb2_grpc.MilvusServiceStub(channel)
        res = stub.Search(req)
        assert res.status.code == 0 and list(res.results.ids.int_id.data)[0] == 1
        req.search_params.add(key="search_list", value="30")
        res = stub.Search(req)
    assert res.status.code == 1100 and "parameter 'search_list' is not supported" in res.status.reason


def test_int8_index_without_metric_is_cosine_as_in_milvus(client: MilvusClient) -> None:
    """pymilvus's examples/int8_example.py: an HNSW index on INT8_VECTOR made without a metric
    gets COSINE (Milvus's default for int vectors), so its search with L2 is refused as Milvus does."""
    s = MilvusClient.create_schema(auto_id=True)
    s.add_field("int64", DataType.INT64, is_primary=True)
    s.add_field("int8_vector", DataType.INT8_VECTOR, dim=8)
    name = unique("int8")
    client.create_collection(name, schema=s)
    x = np.random.default_rng(3).integers(-128, 128, size=(12, 8), dtype=np.int8)
    client.insert(name, [{"int8_vector": v} for v in x])
    ip = MilvusClient.prepare_index_params(
        field_name="int8_vector", index_type="HNSW", index_name="int8_index", M=8, efConstruction=200
    )
    client.create_index(name, ip)
    assert client.describe_index(name, "int8_index")["metric_type"] == "COSINE"
    client.load_collection(name)
    with pytest.raises(
        MilvusException, match=r"metric type not match: invalid parameter\[expected=COSINE\]\[actual=L2\]"
    ):
        client.search(name, data=[x[0]], search_params={"metric_type": "L2"}, limit=1)
    hits = client.search(name, data=[x[0]], limit=1, output_fields=["int8_vector"])
    assert np.frombuffer(hits[0][0]["entity"]["int8_vector"], dtype=np.int8).tolist() == x[0].tolist()
