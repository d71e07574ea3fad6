"""CDC of a full-text collection between two real Kafka clusters and two walvus deployments.

A collection with a BM25 function (its VARCHAR input with an analyzer and TEXT_MATCH), the
function's sparse output and a client-written sparse field is replicated from site A to
site B: B's WAL holds A's records byte for byte, B describes the same schema and functions,
and BM25 search, sparse IP search and TEXT_MATCH give the same hits and scores at both sites.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient

from tests.integration.test_cdc_support import CdcProcess, endpoint, new_cdc, site_api, wal_records
from tests.ports import free_port
from tests.procs import Deployment
from walvus.kafka import LocalKafka

pytestmark = pytest.mark.integration
WORDS = "alpha beta gamma delta kafka delta lake vector search milvus sparse dense index token river stone".split()


@pytest.fixture(scope="module")
def site_b_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = LocalKafka(tmp_path_factory.mktemp("kafka-ft-b"), port=free_port(), controller_port=free_port())
    yield broker.start(timeout=120)
    broker.stop()


@pytest.fixture(scope="module")
def sites(
    kafka_bootstrap: str, site_b_bootstrap: str, tmp_path_factory
) -> Iterator[tuple[Deployment, Deployment]]:
    a = Deployment(kafka_bootstrap, tmp_path_factory.mktemp("ft-site-a"))
    b = Deployment(site_b_bootstrap, tmp_path_factory.mktemp("ft-site-b"))
    a.start("streams", "gateway")  # sparse fields are searched through in-memory inverted indexes
    b.start("streams", "gateway")
    yield a, b
    a.close()
    b.close()


@pytest.fixture(scope="module")
def cdc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdcProcess]:
    proc = new_cdc(Path(tmp_path_factory.mktemp("ft-cdc")))
    yield proc
    proc.stop()


def _docs(rng: np.random.Generator, n: int, start: int) -> list[dict]:
    out = []
    for i in range(start, start + n):
        words = rng.choice(WORDS, size=int(rng.integers(3, 12)))
        dims = rng.choice(40, size=int(rng.integers(1, 6)), replace=False)
        out.append({"id": i, "text": " ".join(words), "sv": {int(d): float(rng.random()) for d in dims}})
    return out


def _same_hits(ha: list, hb: list) -> None:
    """Same scores, and the same rows at each score (rows tied at a score may come in any order;
    at the last score the limit may cut a tie differently)."""
    assert [h["distance"] for h in hb] == pytest.approx([h["distance"] for h in ha], rel=1e-6)
    a = {h["id"]: (h["distance"], h["entity"]["text"]) for h in ha}
    b = {h["id"]: (h["distance"], h["entity"]["text"]) for h in hb}
    last = ha[-1]["distance"]
    above = {k for k, (d, _) in a.items() if d > last * (1 + 1e-6)}
    assert above == {k for k, (d, _) in b.items() if d > last * (1 + 1e-6)}
    for k in set(a) & set(b):
        assert b[k][0] == pytest.approx(a[k][0], rel=1e-6) and b[k][1] == a[k][1]


def _schema_view(client: MilvusClient, name: str) -> tuple[list, list]:
    d = client.describe_collection(name)
    return d["fields"], d["functions"]


def test_bm25_collection_replicates_unchanged(sites, cdc) -> None:
    site_a, site_b = sites
    name, task = f"ft_{uuid.uuid4().hex[:8]}", f"ft-{uuid.uuid4().hex[:8]}"
    a, b = MilvusClient(site_a.uri), MilvusClient(site_b.uri)
    schema = a.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field(
        "text",
        DataType.VARCHAR,
        max_length=1000,
        enable_analyzer=True,
        enable_match=True,
        analyzer_params={"type": "english"},
    )
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("sv", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="text_bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["sparse"],
        )
    )
    idx = a.prepare_index_params()
    idx.add_index(
        "sparse",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
        params={"bm25_k1": 1.4, "bm25_b": 0.7},
    )
    idx.add_index("sv", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    a.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong", shards_num=2)
    rng = np.random.default_rng(3)
    a.insert(name, _docs(rng, 150, 0))
    cdc.client.create(
        {"name": task, "source": endpoint(site_a), "target": endpoint(site_b), "collections": [name]}
    )
    a.flush(name)
    a.insert(name, _docs(rng, 150, 150))
    a.upsert(name, _docs(rng, 40, 100))  # new text for keys 100..139: BM25 statistics change
    a.delete(name, ids=list(range(0, 30)))
    cdc.wait_caught_up(task, after=time.time())

    info = site_api(site_a).catalog.require(name)
    wal_a = wal_records(site_a.bootstrap, site_a.namespace, info.collection_id, info.shards_num)
    wal_b = wal_records(site_b.bootstrap, site_b.namespace, info.collection_id, info.shards_num)
    assert wal_b == wal_a and sum(map(len, wal_a)) > 0
    deadline = time.monotonic() + 60
    while not (b.has_collection(name) and len(b.list_indexes(name)) == 2):
        assert time.monotonic() < deadline, "the collection and its indexes did not reach site B"
        time.sleep(0.2)
    assert _schema_view(b, name) == _schema_view(a, name)
    assert b.describe_index(name, "sparse")["metric_type"] == "BM25"
    b.load_collection(name)

    queries = ["kafka delta lake", "vector search milvus", "river stones", "alpha"]
    kw = {"anns_field": "sparse", "limit": 10, "output_fields": ["text"], "consistency_level": "Strong"}
    ra, rb = a.search(name, queries, **kw), b.search(name, queries, **kw)
    for ha, hb in zip(ra, rb, strict=True):
        assert len(ha) > 0
        _same_hits(ha, hb)
    sq = [{1: 0.5, 7: 1.0, 22: 0.3}]
    kw = {"anns_field": "sv", "limit": 10, "output_fields": ["text"], "consistency_level": "Strong"}
    _same_hits(a.search(name, sq, **kw)[0], b.search(name, sq, **kw)[0])
    flt = {
        "filter": "TEXT_MATCH(text, 'kafka river')",
        "output_fields": ["id"],
        "consistency_level": "Strong",
    }
    matched = sorted(r["id"] for r in a.query(name, **flt))
    assert matched and sorted(r["id"] for r in b.query(name, **flt)) == matched
    cdc.client.delete(task)


def test_multi_analyzer_collection_replicates(sites, cdc) -> None:
    """multi_analyzer_params travel with the schema: site B tokenises rows and queries alike."""
    site_a, site_b = sites
    name, task = f"ftm_{uuid.uuid4().hex[:8]}", f"ftm-{uuid.uuid4().hex[:8]}"
    a, b = MilvusClient(site_a.uri), MilvusClient(site_b.uri)
    japanese = {"tokenizer": {"type": "lindera", "dict_kind": "ipadic"}, "filter": ["removepunct"]}
    multi = {
        "by_field": "language",
        "analyzers": {"Japanese": japanese, "English": {"type": "english"}, "default": {"tokenizer": "icu"}},
        "alias": {"jp": "Japanese"},
    }
    schema = a.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("language", DataType.VARCHAR, max_length=32, nullable=True)
    schema.add_field(
        "text", DataType.VARCHAR, max_length=1000, enable_analyzer=True, multi_analyzer_params=multi
    )
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["sparse"],
        )
    )
    idx = a.prepare_index_params()
    idx.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    a.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")
    rows = [
        {"id": 1, "language": "English", "text": "The Lord of the Rings"},
        {"id": 2, "language": "jp", "text": "千と千尋の神隠し"},
        {"id": 3, "language": "Japanese", "text": "千尋の神隠しの物語"},
        {"id": 4, "language": None, "text": "神隠し and the rings"},
    ]
    a.insert(name, rows)
    cdc.client.create(
        {"name": task, "source": endpoint(site_a), "target": endpoint(site_b), "collections": [name]}
    )
    cdc.wait_caught_up(task, after=time.time())
    deadline = time.monotonic() + 60
    while not (b.has_collection(name) and len(b.list_indexes(name)) == 1):
        assert time.monotonic() < deadline, "the collection and its index did not reach site B"
        time.sleep(0.2)
    assert _schema_view(b, name) == _schema_view(a, name)
    b.load_collection(name)
    for query, analyzer in [("神隠し", "Japanese"), ("rings", "English"), ("rings", None)]:
        params = {"analyzer_name": analyzer} if analyzer else {}
        kw = {"anns_field": "sparse", "limit": 10, "output_fields": ["text"], "search_params": params}
        ha, hb = a.search(name, [query], **kw)[0], b.search(name, [query], **kw)[0]
        assert len(ha) > 0
        _same_hits(ha, hb)
    cdc.client.delete(task)
