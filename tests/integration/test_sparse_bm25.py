"""Sparse vectors and BM25 full-text search through pymilvus, on a real broker and real walvus processes.

Scores are checked against computations done here, independently of walvus: exact inner
products for sparse IP, and BM25 (Milvus's formula) over the live rows for full text.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer
from pymilvus import (
    AnnSearchRequest,
    DataType,
    Function,
    FunctionType,
    MilvusClient,
    MilvusException,
    RRFRanker,
)

from schemas.topics import dead_letter_topic, ingest_topic
from tests.procs import Deployment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dep(kafka_bootstrap, tmp_path_factory):
    d = Deployment(kafka_bootstrap, tmp_path_factory.mktemp("sparse"))
    d.start("streams", "indexer", "gateway")
    yield d
    d.close()


@pytest.fixture(scope="module")
def client(dep):
    c = MilvusClient(dep.uri)
    yield c
    c.close()


def _ip(a: dict, b: dict) -> float:
    return sum(float(np.float32(v)) * float(np.float32(b[k])) for k, v in a.items() if k in b)


def _sparse_collection(client: MilvusClient, name: str, **index_params) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("sv", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dv", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("tag", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("sv", index_type="SPARSE_INVERTED_INDEX", metric_type="IP", params=index_params)
    idx.add_index("dv", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")


def _random_sparse(rng: np.random.Generator, n: int) -> list[dict[int, float]]:
    out = []
    for _ in range(n):
        dims = rng.choice(50, size=int(rng.integers(1, 8)), replace=False)
        out.append({int(d): float(rng.random()) for d in dims})
    return out


def test_sparse_ip_equals_exact_growing_and_sealed(client):
    rng = np.random.default_rng(7)
    _sparse_collection(client, "sp_exact")
    vecs = _random_sparse(rng, 300)
    rows = [
        {"id": i, "sv": v if i % 2 else sorted(v.items()), "dv": rng.random(4).tolist(), "tag": i % 3}
        for i, v in enumerate(vecs)
    ]
    client.insert("sp_exact", rows)
    queries = _random_sparse(rng, 3)

    def check(flt: str = "") -> None:
        res = client.search(
            "sp_exact", queries, anns_field="sv", limit=10, filter=flt, output_fields=["sv", "tag"]
        )
        for q, hits in zip(queries, res, strict=True):
            allowed = [i for i in range(len(vecs)) if not flt or i % 3 == 1]
            exact = sorted(
                ((_ip(q, vecs[i]), i) for i in allowed if _ip(q, vecs[i]) > 0), key=lambda t: (-t[0], t[1])
            )
            assert [h["id"] for h in hits] == [i for _, i in exact[:10]]
            assert [h["distance"] for h in hits] == pytest.approx([s for s, _ in exact[:10]], rel=1e-5)
            for h in hits:
                assert h["entity"]["sv"] == pytest.approx(vecs[h["id"]], rel=1e-6)

    check()
    check("tag == 1")
    client.flush("sp_exact")  # sealed segments searched the same way
    check()
    client.delete("sp_exact", ids=list(range(0, 300, 2)))
    vecs_alive = {i: v for i, v in enumerate(vecs) if i % 2}
    res = client.search("sp_exact", queries[:1], anns_field="sv", limit=300)
    assert {h["id"] for h in res[0]} == {i for i, v in vecs_alive.items() if _ip(queries[0], v) > 0}


def test_a_nullable_sparse_field_growing_sealed_and_added(client):
    """Null sparse rows are stored as null, read back as None, never found; an added nullable
    sparse field reads as null for the rows before it."""
    name = "sp_nullable"
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("sv", DataType.SPARSE_FLOAT_VECTOR, nullable=True)
    schema.add_field("dv", DataType.FLOAT_VECTOR, dim=4)
    idx = client.prepare_index_params()
    idx.add_index("sv", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    idx.add_index("dv", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    rng = np.random.default_rng(11)
    vecs = _random_sparse(rng, 60)
    client.insert(
        name, [{"id": i, "sv": None if i % 3 == 0 else v, "dv": [0.0] * 4} for i, v in enumerate(vecs)]
    )
    query = [{d: 1.0 for d in range(50)}]  # every dimension: every non-null row scores above 0

    def check() -> None:
        hits = client.search(name, query, anns_field="sv", limit=100, output_fields=["sv"])[0]
        assert sorted(h["id"] for h in hits) == [i for i in range(60) if i % 3]
        rows = {r["id"]: r["sv"] for r in client.query(name, "id >= 0", output_fields=["sv"], limit=100)}
        assert [i for i, v in rows.items() if v is None] == [i for i in range(60) if i % 3 == 0]
        assert rows[1] == pytest.approx(vecs[1], rel=1e-6)

    check()
    client.flush(name)  # sealed: the same
    check()
    _sparse_collection(client, "sp_strict")  # not nullable: a null row is refused, nothing written
    with pytest.raises(MilvusException):
        client.insert(
            "sp_strict",
            [
                {"id": 1, "sv": {1: 1.0}, "dv": [0.0] * 4, "tag": 0},
                {"id": 2, "sv": None, "dv": [0.0] * 4, "tag": 0},
            ],
        )
    assert client.query("sp_strict", "id >= 0", output_fields=["count(*)"])[0]["count(*)"] == 0
    client.add_collection_field(name, "extra", DataType.SPARSE_FLOAT_VECTOR, nullable=True)
    client.insert(name, [{"id": 100, "sv": {1: 1.0}, "dv": [0.0] * 4, "extra": {7: 2.0}}])
    extra = {r["id"]: r["extra"] for r in client.query(name, "id in [1, 100]", output_fields=["extra"])}
    assert extra[1] is None and extra[100] == pytest.approx({7: 2.0})


def test_sparse_refusals_and_hybrid(client):
    _sparse_collection(client, "sp_bad", drop_ratio_build=0.0)
    with pytest.raises(MilvusException, match="twice|not a sparse"):
        client.insert("sp_bad", [{"id": 1, "sv": [(3, 0.5), (3, 0.1)], "dv": [0, 0, 0, 0], "tag": 0}])
    assert client.query("sp_bad", filter="", output_fields=["count(*)"])[0]["count(*)"] == 0
    client.insert(
        "sp_bad", [{"id": i, "sv": {i: 1.0, 99: 0.1}, "dv": [i, 0, 0, 0], "tag": 0} for i in range(5)]
    )
    with pytest.raises(MilvusException, match="drop_ratio_search"):
        client.search(
            "sp_bad", [{1: 1.0}], anns_field="sv", search_params={"params": {"drop_ratio_search": 1.5}}
        )
    with pytest.raises(MilvusException, match="not supported"):
        client.search(
            "sp_bad", [{1: 1.0}], anns_field="sv", search_params={"params": {"dim_max_score_ratio": 1}}
        )
    reqs = [
        AnnSearchRequest([{3: 1.0}], "sv", {"metric_type": "IP"}, limit=5),
        AnnSearchRequest([[3, 0, 0, 0]], "dv", {"metric_type": "L2"}, limit=5),
    ]
    res = client.hybrid_search("sp_bad", reqs, RRFRanker(), limit=3)
    assert res[0][0]["id"] == 3  # first in both lists
    res = client.search("sp_bad", [{3: 1.0, 99: 1.0}], anns_field="sv", group_by_field="tag", limit=2)
    assert [(h["id"], h["distance"]) for h in res[0]] == [(3, pytest.approx(1.1))]  # one tag: one group


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())  # the standard analyzer, independently


def _bm25(docs: dict[int, str], query: str, k1: float = 1.2, b: float = 0.75) -> dict[int, float]:
    toks = {i: Counter(_tokens(t)) for i, t in docs.items()}
    n = len(toks)
    avgdl = sum(sum(c.values()) for c in toks.values()) / n
    out = {}
    for i, tf in toks.items():
        dl = sum(tf.values())
        score = 0.0
        for term, qf in Counter(_tokens(query)).items():
            if term not in tf:
                continue
            df = sum(1 for c in toks.values() if term in c)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            score += qf * idf * tf[term] * (k1 + 1) / (tf[term] + k1 * (1 - b + b * dl / avgdl))
        if score > 0:
            out[i] = score
    return out


def _bm25_collection(
    client: MilvusClient, name: str, analyzer: dict | None = None, shards: int = 1, **params
) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    kw = {"analyzer_params": analyzer} if analyzer else {}
    schema.add_field("text", DataType.VARCHAR, max_length=1000, enable_analyzer=True, **kw)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["sparse"],
        )
    )
    idx = client.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params=params)
    client.create_collection(
        name, schema=schema, index_params=idx, consistency_level="Strong", num_shards=shards
    )


DOCS = {
    1: "the quick brown fox jumps over the lazy dog",
    2: "a quick brown dog outpaces a quick fox",
    3: "lazy afternoons are for sleeping dogs",
    4: "vector databases store embeddings for search",
    5: "full text search ranks documents with bm25",
    6: "the fox and the hound",
}


def _check_bm25(client: MilvusClient, name: str, docs: dict[int, str], query: str, **kw) -> None:
    expected = _bm25(docs, query, **kw)
    res = client.search(name, [query], anns_field="sparse", limit=10, output_fields=["text"])
    got = {h["id"]: h["distance"] for h in res[0]}
    assert got.keys() == expected.keys()
    for i, score in expected.items():
        assert got[i] == pytest.approx(score, rel=1e-4)
    scores = [h["distance"] for h in res[0]]
    assert scores == sorted(scores, reverse=True)  # best first


def test_bm25_scores_follow_deletes_and_upserts(client):
    _bm25_collection(client, "bm25_live")
    client.insert("bm25_live", [{"id": i, "text": t} for i, t in DOCS.items()])
    docs = dict(DOCS)
    _check_bm25(client, "bm25_live", docs, "quick fox")
    _check_bm25(client, "bm25_live", docs, "lazy dog dog")
    client.flush("bm25_live")
    _check_bm25(client, "bm25_live", docs, "quick fox")
    client.delete("bm25_live", ids=[2])
    del docs[2]
    _check_bm25(client, "bm25_live", docs, "quick fox")
    client.upsert("bm25_live", [{"id": 4, "text": "a fox in a quick quick search"}])
    docs[4] = "a fox in a quick quick search"
    _check_bm25(client, "bm25_live", docs, "quick fox")
    _check_bm25(client, "bm25_live", docs, "search")


def test_bm25_index_params_function_rules_and_describe(client):
    _bm25_collection(client, "bm25_k1", bm25_k1=2.0, bm25_b=0.3)
    client.insert("bm25_k1", [{"id": i, "text": t} for i, t in DOCS.items()])
    _check_bm25(client, "bm25_k1", DOCS, "the fox", k1=2.0, b=0.3)
    it = client.search_iterator("bm25_k1", ["the fox"], batch_size=2, anns_field="sparse")
    pages = []
    while page := it.next():
        pages.extend(h["id"] for h in page)
    it.close()
    expected = _bm25(DOCS, "the fox", k1=2.0, b=0.3)
    assert sorted(pages) == sorted(expected)  # every match once, across pages
    with pytest.raises(MilvusException, match="function output"):  # pymilvus reads describe_collection
        client.insert("bm25_k1", [{"id": 9, "text": "x", "sparse": {1: 1.0}}])
    with pytest.raises(MilvusException, match="search it with text"):
        client.search("bm25_k1", [{1: 1.0}], anns_field="sparse")
    desc = client.describe_collection("bm25_k1")
    fn = desc["functions"][0]
    assert (fn["name"], fn["input_field_names"], fn["output_field_names"]) == ("bm25", ["text"], ["sparse"])
    text = next(f for f in desc["fields"] if f["name"] == "text")
    assert text["params"]["enable_analyzer"] in (True, "true")
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=100)  # no enable_analyzer
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="f",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["sparse"],
        )
    )
    with pytest.raises(MilvusException, match="enable_analyzer"):
        client.create_collection("bm25_bad", schema=schema)
    with pytest.raises(MilvusException, match="not supported"):
        client.run_analyzer("x", analyzer_params={"tokenizer": "kuromoji"})


def test_english_and_chinese_analyzers(client):
    assert client.run_analyzer("The foxes are running", analyzer_params={"type": "english"}).tokens == [
        "fox",
        "run",
    ]
    _bm25_collection(client, "bm25_zh", analyzer={"type": "chinese"})
    docs = {1: "我爱北京天安门", 2: "向量数据库支持全文检索", 3: "今天天气很好"}
    client.insert("bm25_zh", [{"id": i, "text": t} for i, t in docs.items()])
    res = client.search("bm25_zh", ["数据库"], anns_field="sparse", limit=3)
    assert [h["id"] for h in res[0]] == [2]
    res = client.search("bm25_zh", ["北京的天气"], anns_field="sparse", limit=3)
    assert {h["id"] for h in res[0]} == {1, 3}
    tokens = client.run_analyzer("向量数据库", collection_name="bm25_zh", field_name="text").tokens
    assert "数据库" in tokens


def test_text_and_phrase_match_in_filters(client):
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("doc", DataType.VARCHAR, max_length=200, enable_analyzer=True, enable_match=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    idx = client.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    client.create_collection("tm", schema=schema, index_params=idx, consistency_level="Strong")
    docs = {
        1: "Milvus supports text match",
        2: "match the text exactly",
        3: "nothing relevant",
        4: "text then match",
    }
    client.insert("tm", [{"id": i, "doc": d, "v": [i, 0]} for i, d in docs.items()])

    def ids(flt: str) -> set[int]:
        return {r["id"] for r in client.query("tm", filter=flt, output_fields=["id"])}

    assert ids("TEXT_MATCH(doc, 'milvus exactly')") == {1, 2}
    assert ids("PHRASE_MATCH(doc, 'text match')") == {1}
    assert ids("PHRASE_MATCH(doc, 'text match', 1)") == {1, 4}
    res = client.search("tm", [[0, 0]], filter="TEXT_MATCH(doc, 'match')", limit=10)
    assert [h["id"] for h in res[0]] == [1, 2, 4]
    client.flush("tm")
    client.delete("tm", filter="TEXT_MATCH(doc, 'relevant')")
    assert ids("id > 0") == {1, 2, 4}
    with pytest.raises(MilvusException, match="needs a VARCHAR field"):
        client.query("tm", filter="TEXT_MATCH(id, 'x')")


def test_ingest_topic_tokenises_and_takes_sparse_json(dep, client):
    _bm25_collection(client, "bm25_ing")
    _sparse_collection(client, "sp_ing")
    topic = ingest_topic(dep.namespace)
    p = Producer({"bootstrap.servers": dep.bootstrap})
    p.produce(
        topic,
        json.dumps(
            {
                "op": "insert",
                "collection": "bm25_ing",
                "rows": [{"id": i, "text": t} for i, t in DOCS.items()],
            }
        ).encode(),
    )
    bad = {"op": "insert", "collection": "bm25_ing", "row": {"id": 99, "text": "x", "sparse": {"1": 1.0}}}
    p.produce(topic, json.dumps(bad).encode())
    rows = [
        {"id": 1, "sv": {"3": 0.5, "7": 1.0}, "dv": [0, 0, 0, 0], "tag": 0},
        {"id": 2, "sv": [[3, 2.0]], "dv": [0, 0, 0, 0], "tag": 0},
    ]
    p.produce(topic, json.dumps({"op": "insert", "collection": "sp_ing", "rows": rows}).encode())
    p.flush(10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        n_bm = client.query("bm25_ing", filter="", output_fields=["count(*)"])[0]["count(*)"]
        n_sp = client.query("sp_ing", filter="", output_fields=["count(*)"])[0]["count(*)"]
        if n_bm == len(DOCS) and n_sp == 2:
            break
        time.sleep(0.2)
    _check_bm25(client, "bm25_ing", DOCS, "quick fox")
    res = client.search("sp_ing", [{3: 1.0}], anns_field="sv", limit=5)
    assert [(h["id"], h["distance"]) for h in res[0]] == [(2, 2.0), (1, 0.5)]
    c = Consumer({"bootstrap.servers": dep.bootstrap, "group.id": "t", "auto.offset.reset": "earliest"})
    c.subscribe([dead_letter_topic(dep.namespace)])
    msg = None
    while time.monotonic() < deadline and msg is None:
        msg = c.poll(1.0)
        msg = None if msg is None or msg.error() else msg
    c.close()
    assert msg is not None and "output of function" in dict(msg.headers())["walvus.reason"].decode()
