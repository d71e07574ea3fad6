"""Collection TTL and Bounded consistency through pymilvus against a real walvus."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import MilvusClient

from tests.integration.search_support import create_flat_collection, running


@pytest.fixture(scope="module")
def live(kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("ttl")) as pair:
        yield pair


def _count(client: MilvusClient, name: str, level: str = "Strong") -> int:
    return client.query(name, filter="", output_fields=["count(*)"], consistency_level=level)[0]["count(*)"]


def test_rows_past_the_ttl_leave_search_query_and_count(live):
    _, client = live
    create_flat_collection(client, "ttl", 4)
    client.alter_collection_properties("ttl", {"collection.ttl.seconds": "3"})
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((20, 4)).astype(np.float32)
    client.insert("ttl", [{"id": i, "vec": vecs[i].tolist(), "n": i} for i in range(20)])
    assert _count(client, "ttl") == 20
    time.sleep(3.5)
    assert _count(client, "ttl") == 0
    assert client.search("ttl", [vecs[0].tolist()], limit=5, consistency_level="Strong") == [[]]
    assert client.query("ttl", filter="id >= 0", output_fields=["n"], consistency_level="Strong") == []
    client.upsert("ttl", [{"id": 1, "vec": vecs[1].tolist(), "n": 100}])  # a fresh version lives again
    got = client.query("ttl", filter="id >= 0", output_fields=["n"], consistency_level="Strong")
    assert [(r["id"], r["n"]) for r in got] == [(1, 100)]
    client.flush("ttl")  # sealed rows expire the same way
    time.sleep(3.5)
    assert _count(client, "ttl") == 0


def test_bounded_reads_see_this_clients_writes_and_rows_older_than_the_bound(live):
    dep, client = live
    create_flat_collection(client, "bounded", 4)
    other = MilvusClient(dep.uri)
    try:
        for i in range(5):
            other.insert("bounded", [{"id": i, "vec": [float(i)] * 4, "n": i}])
            assert _count(other, "bounded", "Bounded") == i + 1  # its own write, at once
        assert _count(client, "bounded", "Bounded") == 5
        hits = client.search("bounded", [[4.0] * 4], limit=1, consistency_level="Bounded")[0]
        assert hits[0]["id"] == 4
    finally:
        other.close()
