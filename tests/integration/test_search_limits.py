"""Limits answer with clear MilvusException messages (and write nothing): topk + offset, nq, the
query result window, request size, dimension and the collection count (shards x partitions)."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType, MilvusException

from tests.integration.search_support import running

pytestmark = pytest.mark.integration
MAX_DIM = 64
MAX_COLLECTIONS = 8


@pytest.fixture(scope="module")
def live(kafka_bootstrap, tmp_path_factory):
    env = {
        "WALVUS_MAX_REQUEST_MB": "1",
        "WALVUS_MAX_DIM": str(MAX_DIM),
        "WALVUS_MAX_COLLECTIONS": str(MAX_COLLECTIONS),
    }
    with running(kafka_bootstrap, tmp_path_factory.mktemp("search-limits"), **env) as (dep, client):
        yield dep, client


def _create(client, name: str, dim: int = 4, shards: int = 1) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(
        name, schema=schema, index_params=idx, num_shards=shards, consistency_level="Strong"
    )


@pytest.fixture(scope="module")
def small(live):
    _, client = live
    _create(client, "small")
    rng = np.random.default_rng(40)
    client.insert("small", [{"id": i, "vec": rng.random(4).tolist()} for i in range(100)])
    return client


def _count(client, name: str) -> int:
    return client.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"]


def test_topk_plus_offset_over_16384(small):
    client = small
    assert len(client.search("small", [[0.5] * 4], limit=16_384)[0]) == 100  # the largest allowed
    assert len(client.search("small", [[0.5] * 4], limit=16_000, offset=384)[0]) == 0
    with pytest.raises(MilvusException, match=r"topk.*16000.*offset.*385.*\[1, 16384\]"):
        client.search("small", [[0.5] * 4], limit=16_000, offset=385)
    with pytest.raises(MilvusException, match=r"topk.*16385.*\[1, 16384\]"):
        client.search("small", [[0.5] * 4], limit=16_385)
    with pytest.raises(MilvusException, match=r"16384"):
        client.query("small", filter="id >= 0", output_fields=["id"], limit=16_000, offset=385)
    assert len(client.query("small", filter="id >= 0", output_fields=["id"], limit=16_000, offset=384)) == 0


def test_nq_over_16384(small):
    client = small
    q = np.random.default_rng(41).random((16_385, 4), dtype=np.float32)
    with pytest.raises(MilvusException, match=r"nq.*16385.*\[1, 16384\]"):
        client.search("small", q.tolist(), limit=1)
    res = client.search("small", q[:16_384].tolist(), limit=1)
    assert len(res) == 16_384


def test_request_size_over_the_limit(live):
    _, client = live
    _create(client, "big", dim=MAX_DIM)
    rng = np.random.default_rng(42)
    rows = [{"id": i, "vec": rng.random(MAX_DIM).tolist()} for i in range(8_000)]  # ~2 MB of float32
    with pytest.raises(MilvusException, match=r"request size .* over the limit of 1 MB"):
        client.insert("big", rows)
    with pytest.raises(MilvusException, match=r"over the limit of 1 MB"):
        client.insert("big", rows[:5_000])  # ~1.3 MB
    assert _count(client, "big") == 0  # nothing was written
    client.insert("big", rows[:3_000])  # ~0.8 MB: fine
    assert _count(client, "big") == 3_000
    q = rng.random((5_000, MAX_DIM), dtype=np.float32)  # a ~1.3 MB search request
    with pytest.raises(MilvusException, match=r"request size .* over the limit of 1 MB"):
        client.search("big", q.tolist(), limit=1)


def test_dimension_over_the_limit(live):
    _, client = live
    with pytest.raises(MilvusException, match=rf"dim must be between 1 and {MAX_DIM}, got {MAX_DIM + 1}"):
        _create(client, "too_wide", dim=MAX_DIM + 1)
    assert not client.has_collection("too_wide")
    _create(client, "widest", dim=MAX_DIM)
    assert client.has_collection("widest")
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("b", DataType.BINARY_VECTOR, dim=MAX_DIM + 8)
    with pytest.raises(MilvusException, match=rf"between 1 and {MAX_DIM}"):
        client.create_collection("too_wide_bin", schema=schema)


def test_too_many_collections_counts_shards_times_partitions(live):
    """Runs last in this module: it starts from an empty deployment."""
    _, client = live
    for name in client.list_collections():
        client.drop_collection(name)
    _create(client, "a", shards=2)  # 2 of 8
    _create(client, "b", shards=3)  # 5 of 8
    with pytest.raises(MilvusException, match=rf"over the limit of {MAX_COLLECTIONS} collections.*5 used"):
        _create(client, "c", shards=4)  # 9 > 8
    assert not client.has_collection("c")
    client.create_partition("a", "p1")  # 7 of 8: a has 2 shards x 2 partitions
    with pytest.raises(MilvusException, match=rf"over the limit of {MAX_COLLECTIONS}"):
        client.create_partition("a", "p2")  # 9 > 8
    with pytest.raises(MilvusException, match=rf"over the limit of {MAX_COLLECTIONS}"):
        client.create_partition("b", "p1")  # 10 > 8
    assert client.list_partitions("a") == ["_default", "p1"]
    _create(client, "c", shards=1)  # 8 of 8
    with pytest.raises(MilvusException, match=rf"over the limit of {MAX_COLLECTIONS}"):
        _create(client, "d", shards=1)
    client.drop_collection("b")  # frees 3
    _create(client, "d", shards=3)
    assert sorted(client.list_collections()) == ["a", "c", "d"]
