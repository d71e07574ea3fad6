"""Partitions end to end: DDL, load/release, writes and reads scoped to partitions, and pruning,
which the walvus extra stat ``scanned_rows`` (rows a search or query examined) makes visible."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from pymilvus import DataType, MilvusException

from schemas.sharding import key_hashes
from tests.integration.search_support import create_flat_collection, running, scanned, stats, wait_indexed
from tests.procs import LAYOUTS

pytestmark = pytest.mark.integration
DIM = 4


@pytest.fixture(scope="module", params=LAYOUTS)
def live(request, kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("search-parts"), request.param) as (dep, client):
        yield dep, client


def _ids(rows) -> list[int]:
    return sorted(r["id"] for r in rows)


def _hit_ids(hits) -> set[int]:
    return {h["id"] for h in hits}


def _partition_ids(dep, name: str, wanted: str) -> dict[str, int]:
    api = dep.api()
    deadline = time.monotonic() + 30
    while wanted not in api.catalog.require(name).partitions:  # this catalog tails the topic too
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return dict(api.catalog.require(name).partitions)


def test_partitions_ddl_scoped_reads_writes_and_pruning(live):
    dep, client = live
    create_flat_collection(client, "parts", DIM, num_shards=2, consistency_level="Strong")
    for p in ("p1", "p2", "p3"):
        client.create_partition("parts", p)
    assert client.list_partitions("parts") == ["_default", "p1", "p2", "p3"]
    assert client.has_partition("parts", "p2") and not client.has_partition("parts", "p9")
    with pytest.raises(MilvusException, match="exist"):
        client.create_partition("parts", "p1")

    rng = np.random.default_rng(30)
    layout = {"p1": range(0, 100), "p2": range(100, 250), "p3": range(250, 300), "_default": range(300, 320)}
    x = rng.random((320, DIM), dtype=np.float32)
    for p, ids in layout.items():
        client.insert("parts", [{"id": i, "vec": x[i].tolist(), "n": i} for i in ids], partition_name=p)
    q = [x[120].tolist()]

    def check_scoped(alive: dict[str, set[int]]) -> None:
        for p, ids in alive.items():
            got = client.query("parts", filter="n >= 0", output_fields=["id"], partition_names=[p])
            assert set(_ids(got)) == ids, p
            cnt = client.query("parts", filter="", output_fields=["count(*)"], partition_names=[p])
            assert cnt[0]["count(*)"] == len(ids)
            hits = client.search("parts", q, limit=400, partition_names=[p])[0]
            assert _hit_ids(hits) == ids, p
            # a filter still applies inside the partitions asked for
            got = client.query("parts", filter="n % 3 == 0", output_fields=["id"], partition_names=[p])
            assert set(_ids(got)) == {i for i in ids if i % 3 == 0}, p
            hits = client.search("parts", q, limit=400, filter="n % 3 == 0", partition_names=[p])[0]
            assert _hit_ids(hits) == {i for i in ids if i % 3 == 0}, p
        both = client.search("parts", q, limit=400, partition_names=["p1", "p3"])[0]
        assert _hit_ids(both) == alive["p1"] | alive["p3"]
        everything = client.search("parts", q, limit=400)[0]
        assert _hit_ids(everything) == set().union(*alive.values())

    alive = {p: set(ids) for p, ids in layout.items()}
    check_scoped(alive)

    # deletes scoped to a partition touch only rows of that partition
    client.delete("parts", ids=[5, 150], partition_name="p1")  # 150 lives in p2: kept
    alive["p1"].discard(5)
    client.delete("parts", filter="id < 110", partition_name="p2")  # p1's rows 0..99 are kept
    alive["p2"] -= set(range(100, 110))
    check_scoped(alive)
    with pytest.raises(MilvusException, match="partition"):
        client.query("parts", filter="n >= 0", output_fields=["id"], partition_names=["nope"])

    # pruning: after a flush each sealed segment holds one partition; a search scoped to p2
    # examines exactly the rows stored for p2 (deleted ones included: they are still stored)
    client.flush("parts")
    s = wait_indexed(client, "parts", 1)
    assert s["growing_rows"] == 0
    for p, stored in (("p2", 150), ("p1", 100), ("_default", 20)):
        before = scanned(client, "parts")
        hits = client.search("parts", q, limit=400, partition_names=[p])[0]
        assert _hit_ids(hits) == alive[p]
        assert scanned(client, "parts") - before == stored, p
        before = scanned(client, "parts")
        client.query("parts", filter="n >= 0", output_fields=["id"], partition_names=[p])
        assert scanned(client, "parts") - before == stored, p
    before = scanned(client, "parts")
    client.search("parts", q, limit=10)
    assert scanned(client, "parts") - before == 320
    check_scoped(alive)

    # release / load partitions
    client.release_partitions("parts", ["p3"])
    with pytest.raises(MilvusException, match="not loaded"):
        client.search("parts", q, limit=10, partition_names=["p3"])
    hits = client.search("parts", q, limit=400)[0]
    assert _hit_ids(hits) == alive["p1"] | alive["p2"] | alive["_default"]
    before = scanned(client, "parts")
    client.search("parts", q, limit=400)
    assert scanned(client, "parts") - before == 270  # p3's 50 rows are not examined
    client.load_partitions("parts", ["p3"])
    hits = client.search("parts", q, limit=400, partition_names=["p3"])[0]
    assert _hit_ids(hits) == alive["p3"]

    # drop a partition: release first; its rows are gone for good, also after a full load
    with pytest.raises(MilvusException, match="release"):
        client.drop_partition("parts", "p3")
    client.release_partitions("parts", ["p3"])
    client.drop_partition("parts", "p3")
    assert client.list_partitions("parts") == ["_default", "p1", "p2"]
    client.load_collection("parts")
    hits = client.search("parts", q, limit=400)[0]
    assert _hit_ids(hits) == alive["p1"] | alive["p2"] | alive["_default"]
    count = client.query("parts", filter="", output_fields=["count(*)"])[0]["count(*)"]
    assert count == len(alive["p1"] | alive["p2"] | alive["_default"])
    with pytest.raises(MilvusException, match="partition"):
        client.search("parts", q, limit=10, partition_names=["p3"])

    # created again under the same name, the partition starts empty: the old rows never return,
    # neither from memory nor from Delta after the searcher reloads the collection
    client.create_partition("parts", "p3")
    ids = _partition_ids(dep, "parts", "p3")
    assert ids["p3"] == 4 and sorted(ids.values()) == [0, 1, 2, 4]  # a new id: 3 is never reused
    client.insert("parts", [{"id": 1000, "vec": x[0].tolist(), "n": 1000}], partition_name="p3")
    client.load_partitions("parts", ["p3"])
    alive["p3"] = {1000}
    check_scoped(alive)
    client.flush("parts")
    client.release_collection("parts")
    client.load_collection("parts")
    check_scoped(alive)


def test_partition_key_routes_rows_and_prunes(live):
    _, client = live
    nparts, n, tenants = 8, 800, 10
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tenant", DataType.INT64, is_partition_key=True)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(
        "tenants", schema=schema, index_params=idx, num_partitions=nparts, consistency_level="Strong"
    )
    hidden = [f"_default_{i}" for i in range(nparts)]
    assert sorted(client.list_partitions("tenants")) == sorted(hidden)
    rng = np.random.default_rng(31)
    x = rng.random((n, DIM), dtype=np.float32)
    tenant_of = [i % tenants for i in range(n)]
    client.insert("tenants", [{"id": i, "vec": x[i].tolist(), "tenant": tenant_of[i]} for i in range(n)])
    with pytest.raises(MilvusException, match="partition"):
        client.search("tenants", [x[0].tolist()], limit=5, partition_names=["_default_0"])

    part_of_tenant = {
        t: int(h % np.uint64(nparts))
        for t, h in zip(range(tenants), key_hashes(pa.array(range(tenants))), strict=True)
    }
    rows_per_part = Counter(part_of_tenant[t] for t in tenant_of)

    def check_tenant(t: int) -> None:
        want = {i for i in range(n) if tenant_of[i] == t}
        got = client.query("tenants", filter=f"tenant == {t}", output_fields=["id", "tenant"])
        assert set(_ids(got)) == want and all(r["tenant"] == t for r in got)
        hits = client.search(
            "tenants", [x[0].tolist()], limit=n, filter=f"tenant == {t}", output_fields=["tenant"]
        )[0]
        assert _hit_ids(hits) == want

    for t in range(tenants):
        check_tenant(t)
    client.flush("tenants")
    wait_indexed(client, "tenants", 1)
    # rows were routed by key: each hidden partition holds the rows of the tenants hashed to it
    for i, p in enumerate(hidden):
        assert int(client.get_partition_stats("tenants", p)["row_count"]) == rows_per_part.get(i, 0), p

    # a filter on the key prunes to its hidden partition
    target = part_of_tenant[3]
    assert rows_per_part[target] < n
    before = scanned(client, "tenants")
    hits = client.search("tenants", [x[0].tolist()], limit=20, filter="tenant == 3")[0]
    assert len(hits) == 20 and all(tenant_of[h["id"]] == 3 for h in hits)
    assert scanned(client, "tenants") - before == rows_per_part[target]
    before = scanned(client, "tenants")
    client.query("tenants", filter="tenant in [3]", output_fields=["id"])
    assert scanned(client, "tenants") - before == rows_per_part[target]

    # with growing rows too: at most that partition's sealed rows plus the growing ones
    extra = [{"id": n + i, "vec": x[i].tolist(), "tenant": i % tenants} for i in range(50)]
    client.insert("tenants", extra)
    tenant_of += [r["tenant"] for r in extra]
    n += len(extra)
    assert client.query("tenants", filter="", output_fields=["count(*)"])[0]["count(*)"] == n  # caught up
    growing = stats(client, "tenants")["growing_rows"]
    assert growing == 50
    before = scanned(client, "tenants")
    hits = client.search("tenants", [x[0].tolist()], limit=n, filter="tenant == 3")[0]
    assert _hit_ids(hits) == {i for i in range(n) if tenant_of[i] == 3}
    assert scanned(client, "tenants") - before <= rows_per_part[target] + growing
    for t in range(tenants):
        check_tenant(t)
