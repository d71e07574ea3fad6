"""Aliases, rename and the replica RPCs against a real walvus (Kafka, Delta, FAISS, gRPC, pymilvus),
and their replication by CDC."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, MilvusClient, RRFRanker

from schemas.collection import CollectionSchema, FieldSchema
from schemas.types import DataType
from tests.integration.search_support import create_flat_collection, running, stats, wait_indexed
from tests.integration.test_cdc_support import namespace_api, new_cdc, wal_records

pytestmark = pytest.mark.integration
DIM = 4


@pytest.fixture(scope="module")
def live(kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("aliases")) as (dep, client):
        yield dep, client


def _fill(client: MilvusClient, name: str, centre: float, n: int = 200) -> None:
    """``n`` rows around ``centre`` on every axis; ``n`` tells the collections apart."""
    create_flat_collection(client, name, DIM, consistency_level="Strong")
    x = np.random.default_rng(int(centre * 10) + 50).normal(centre, 0.1, (n, DIM)).astype(np.float32)
    client.insert(name, [{"id": i, "vec": x[i].tolist(), "n": int(centre)} for i in range(n)])


class SearchLoop:
    """Searches ``name`` in a thread until stopped; records errors and which collection answered."""

    def __init__(self, client: MilvusClient, name: str) -> None:
        self.client, self.name = client, name
        self.errors: list[Exception] = []
        self.seen: set[int] = set()
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SearchLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                hits = self.client.search(self.name, [[0.0] * DIM], limit=3, output_fields=["n"])
                self.seen |= {h["entity"]["n"] for h in hits[0]}
                self.count += 1
            except Exception as exc:
                self.errors.append(exc)

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while n not in self.seen:
            assert not self.errors, self.errors[:3]
            assert time.monotonic() < deadline, f"no answer from collection n={n}; seen {self.seen}"
            time.sleep(0.01)


def test_alter_alias_under_a_search_loop_causes_no_errors(live) -> None:
    _, client = live
    _fill(client, "blue", 1.0)
    _fill(client, "green", 2.0)
    client.create_alias("blue", "prod")
    with SearchLoop(client, "prod") as loop:
        loop.wait_for(1)
        for _ in range(3):
            client.alter_alias("green", "prod")
            loop.wait_for(2)
            loop.seen.clear()
            client.alter_alias("blue", "prod")
            loop.wait_for(1)
            loop.seen.clear()
    assert not loop.errors, loop.errors[:3]
    assert loop.count > 0


def test_every_data_and_search_rpc_through_an_alias(live) -> None:
    _, client = live
    _fill(client, "orig", 3.0, n=50)
    client.create_alias("orig", "handle")
    assert client.describe_collection("handle")["collection_name"] == "orig"
    client.insert("handle", [{"id": 100, "vec": [9.0] * DIM, "n": 100}])
    client.upsert("handle", [{"id": 100, "vec": [9.0] * DIM, "n": 101}])
    client.delete("handle", filter="id in [0, 1]")
    assert client.get("handle", ids=[100])[0]["n"] == 101
    assert client.query("handle", filter="", output_fields=["count(*)"])[0]["count(*)"] == 49
    assert client.search("handle", [[9.0] * DIM], limit=1)[0][0]["id"] == 100
    req = AnnSearchRequest([[9.0] * DIM], "vec", {"metric_type": "L2"}, limit=2)
    assert client.hybrid_search("handle", [req], RRFRanker(), limit=1)[0][0]["id"] == 100
    page = client.query_iterator("handle", batch_size=20, filter="id >= 0", output_fields=["id"])
    total = 0
    while rows := page.next():
        total += len(rows)
    page.close()
    assert total == 49
    client.flush("handle")
    wait_indexed(client, "handle", 1)
    assert client.get_collection_stats("handle")["row_count"] == 49
    client.create_partition("handle", "p1")
    assert client.list_partitions("handle") == ["_default", "p1"]
    client.release_collection("handle")
    assert str(client.get_load_state("orig")["state"]) == "NotLoad"
    client.load_collection("handle")
    assert client.list_indexes("handle") == ["vec"]
    (replica,) = client.describe_replica("handle")
    assert replica.resource_group == "__default_resource_group"
    rg = client.describe_resource_group("__default_resource_group")
    assert rg.num_loaded_replica["orig"] == 1 and client.list_resource_groups() == [
        "__default_resource_group"
    ]


def test_databases_keep_collections_apart(live) -> None:
    dep, client = live
    client.create_database("team")
    _fill(client, "shared", 5.0, n=20)
    team = MilvusClient(dep.uri, db_name="team")
    try:
        _fill(team, "shared", 6.0, n=30)  # the same name in another database: another collection
        team.flush("shared")
        wait_indexed(team, "shared", 1)
        assert team.query("shared", filter="", output_fields=["count(*)"])[0]["count(*)"] == 30
        assert client.query("shared", filter="", output_fields=["count(*)"])[0]["count(*)"] == 20
        assert team.search("shared", [[6.0] * DIM], limit=1, output_fields=["n"])[0][0]["entity"]["n"] == 6
        team.create_alias("shared", "team_view")
        assert team.describe_alias("team_view")["collection_name"] == "shared"
        assert "team_view" not in client.list_aliases()["aliases"]
        ids = {
            client.describe_collection("shared")["collection_id"],
            team.describe_collection("shared")["collection_id"],
        }
        assert len(ids) == 2  # WAL topics and Delta tables are named by these ids
    finally:
        team.close()


def test_rename_keeps_data_and_indexes_and_readers_through_an_alias_see_no_error(live) -> None:
    dep, client = live
    _fill(client, "before", 4.0, n=300)
    client.flush("before")
    indexed = wait_indexed(client, "before", 1)
    client.create_alias("before", "reader")
    with SearchLoop(client, "reader") as loop:
        loop.wait_for(4)
        client.rename_collection("before", "after")
        seen = loop.count
        while loop.count < seen + 20:
            assert not loop.errors, loop.errors[:3]
            time.sleep(0.01)
    assert not loop.errors, loop.errors[:3]
    assert "before" not in client.list_collections() and not client.has_collection("before")
    assert client.describe_alias("reader")["collection_name"] == "after"
    now = stats(client, "after")
    assert (
        now["sealed_segments"] == indexed["sealed_segments"]
        and now["loaded_indexes"] == indexed["loaded_indexes"]
    )
    assert client.query("after", filter="", output_fields=["count(*)"])[0]["count(*)"] == 300
    # writes under the new name are sealed and indexed by the streams worker and the indexer
    client.insert("after", [{"id": 1000 + i, "vec": [4.0] * DIM, "n": 4} for i in range(10)])
    client.flush("after")
    assert wait_indexed(client, "after", 1)["sealed_segments"] > indexed["sealed_segments"]
    # and the catalog replays to the same state after a gateway restart
    dep.stop("gateway")
    dep.start("gateway")
    fresh = MilvusClient(dep.uri)
    try:
        assert "before" not in fresh.list_collections()
        deadline = time.monotonic() + 60
        while str(fresh.get_load_state("reader")["state"]) != "Loaded":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert fresh.query("reader", filter="", output_fields=["count(*)"])[0]["count(*)"] == 310
        fresh.use_database("team")  # the other database's collection and alias are back too
        while str(fresh.get_load_state("team_view")["state"]) != "Loaded":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert fresh.query("team_view", filter="", output_fields=["count(*)"])[0]["count(*)"] == 30
    finally:
        fresh.close()


def test_cdc_replicates_aliases_and_renames(kafka_bootstrap, tmp_path: Path) -> None:
    """A task for one collection keeps replicating it after a rename, with its aliases; databases
    are replicated too."""
    uid = uuid.uuid4().hex[:8]
    ns_a, ns_b = f"ala{uid}", f"alb{uid}"
    a, b = namespace_api(kafka_bootstrap, ns_a), namespace_api(kafka_bootstrap, ns_b)
    cdc = new_cdc(tmp_path / "cdc")
    try:
        schema = CollectionSchema(
            fields=(
                FieldSchema("id", DataType.INT64, is_primary=True),
                FieldSchema("v", DataType.FLOAT_VECTOR, dim=2),
            )
        )
        docs = a.create_collection("docs", schema)
        a.create_collection("other", schema)
        ep = {"bootstrap": kafka_bootstrap}
        cdc.client.create(
            {
                "name": f"al-{uid}",
                "source": {**ep, "namespace": ns_a, "site": ns_a},
                "target": {**ep, "namespace": ns_b, "site": ns_b},
                "collections": ["docs"],
            }
        )
        a.databases.create("sales", {"region": "eu"})
        a.aliases.create("docs", "live")
        a.rename_collection("docs", "papers")
        a.aliases.create("papers", "latest")
        a.insert("papers", {"id": np.arange(5), "v": np.zeros((5, 2), "float32")})
        deadline = time.monotonic() + 60
        while b.catalog.alias("latest") is None or b.catalog.get("papers") is None:
            assert time.monotonic() < deadline, f"not replicated:\n{cdc.log_tail()}"
            time.sleep(0.1)
        assert b.catalog.require("papers").collection_id == docs.collection_id
        assert b.catalog.get("docs") is None and b.catalog.get("other") is None
        assert b.catalog.require("live").name == "papers" and b.catalog.require("latest").name == "papers"
        assert b.catalog.database("sales").properties == {"region": "eu"}  # type: ignore[union-attr]
        cdc.wait_caught_up(f"al-{uid}")
        assert sum(len(s) for s in wal_records(kafka_bootstrap, ns_b, docs.collection_id, 1)) == 1
    finally:
        cdc.stop()
        a.close()
        b.close()
