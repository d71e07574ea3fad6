"""Aliases, rename and the replica / resource-group RPCs through the real pymilvus MilvusClient."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from pymilvus import MilvusClient, MilvusException

from tests.memory import RunningGateway, running_gateway

_names = itertools.count()


def unique(prefix: str = "c") -> str:
    return f"{prefix}_{next(_names)}"


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with running_gateway() as gw:
        yield gw


def two_collections(client: MilvusClient) -> tuple[str, str]:
    a, b = unique("a"), unique("b")
    for name, value in ((a, 1.0), (b, -1.0)):
        client.create_collection(name, dimension=2, consistency_level="Strong")
        client.insert(name, [{"id": 1, "vector": [value, 0.0], "src": name}])
    return a, b


def test_alias_rpcs_and_data_through_an_alias(client: MilvusClient) -> None:
    a, b = two_collections(client)
    alias = unique("alias")
    client.drop_alias(alias)  # missing: succeeds, as in Milvus
    client.create_alias(a, alias)
    assert client.describe_alias(alias) == {"alias": alias, "collection_name": a, "db_name": "default"}
    assert client.list_aliases(a)["aliases"] == [alias]
    assert alias in client.list_aliases()["aliases"]
    assert client.describe_collection(alias) == client.describe_collection(a)
    assert client.describe_collection(a)["aliases"] == [alias]
    assert client.has_collection(alias)
    assert alias not in client.list_collections()
    client.insert(alias, [{"id": 2, "vector": [0.5, 0.5], "src": "via alias"}])
    client.upsert(alias, [{"id": 2, "vector": [0.5, 0.5], "src": "upserted"}])
    assert client.get(alias, ids=[2])[0]["src"] == "upserted"
    assert client.query(alias, filter="id >= 0", output_fields=["count(*)"])[0]["count(*)"] == 2
    hits = client.search(alias, data=[[1.0, 0.0]], limit=1, output_fields=["src"])
    assert hits[0][0]["entity"]["src"] == a
    client.delete(alias, ids=[2])
    assert client.query(alias, filter="id >= 0", output_fields=["count(*)"])[0]["count(*)"] == 1
    client.flush(alias)
    assert client.get_collection_stats(alias)["row_count"] == 1
    assert client.describe_index(alias, "vector")["index_type"] == "AUTOINDEX"
    client.alter_alias(b, alias)
    assert client.search(alias, data=[[1.0, 0.0]], limit=1, output_fields=["src"])[0][0]["entity"]["src"] == b
    client.release_collection(alias)
    assert str(client.get_load_state(b)["state"]) == "NotLoad"
    client.load_collection(alias)
    client.drop_alias(alias)
    assert not client.has_collection(alias)


def test_alias_errors_use_milvus_codes(client: MilvusClient) -> None:
    a, b = two_collections(client)
    alias = unique("alias")
    client.create_alias(a, alias)
    cases = [
        (lambda: client.create_alias(b, alias), 1602, "alias already exist"),
        (lambda: client.create_alias(a, b), 1601, "alias and collection name conflict"),
        (lambda: client.create_collection(alias, dimension=2), 1601, "conflicts with an existing alias"),
        (lambda: client.describe_alias(unique("nope")), 1600, "alias not found"),
        (lambda: client.alter_alias(a, unique("nope")), 1600, "alias not found"),
        (lambda: client.drop_collection(alias), 65535, "cannot drop the collection via alias"),
        (lambda: client.drop_collection(a), 65535, "has associated aliases"),
        (lambda: client.alter_alias(a, b), 1601, "alias and collection name conflict"),
        (lambda: client.create_alias(a, "1x"), 1100, "Invalid collection alias: 1x"),
        (lambda: client.list_aliases(unique("nope")), 100, "collection not found"),
    ]
    for call, code, message in cases:
        with pytest.raises(MilvusException, match=message) as err:
            call()
        assert err.value.code == code
    assert client.describe_alias(alias)["collection_name"] == a
    client.drop_alias(alias)
    client.drop_collection(a)


def test_rename_keeps_data_index_load_and_aliases(client: MilvusClient) -> None:
    a, _ = two_collections(client)
    alias, new = unique("alias"), unique("renamed")
    client.create_alias(a, alias)
    before = client.describe_collection(a)
    client.rename_collection(a, new)
    assert (
        not client.has_collection(a)
        and new in client.list_collections()
        and a not in client.list_collections()
    )
    after = client.describe_collection(new)
    assert after["collection_id"] == before["collection_id"] and after["fields"] == before["fields"]
    assert client.list_indexes(new) == ["vector"]
    assert str(client.get_load_state(new)["state"]) == "Loaded"
    assert client.get(new, ids=[1])[0]["src"] == a
    assert client.describe_alias(alias)["collection_name"] == new
    with pytest.raises(MilvusException, match="collection not found"):
        client.get(a, ids=[1])
    with pytest.raises(MilvusException, match="duplicated new collection name"):
        client.rename_collection(new, alias)
    with pytest.raises(MilvusException, match="database not found"):
        client.rename_collection(new, unique(), target_db="other")


def test_replicas_and_the_one_resource_group(client: MilvusClient) -> None:
    a, _ = two_collections(client)
    (replica,) = client.describe_replica(a)
    assert replica.resource_group == "__default_resource_group" and replica.group_nodes == (1,)
    assert [s.channel_name for s in replica.shards] == [f"{a}_v0"]
    assert client.list_resource_groups() == ["__default_resource_group"]
    rg = client.describe_resource_group("__default_resource_group")
    assert rg.num_available_node == 1 and rg.num_loaded_replica[a] == 1
    with pytest.raises(MilvusException, match="resource group not found"):
        client.describe_resource_group("rg1")
    with pytest.raises(MilvusException, match="resource group not found"):
        client.transfer_replica("__default_resource_group", "rg1", a, 1)
    client.release_collection(a)
    with pytest.raises(MilvusException, match="replica not found"):
        client.describe_replica(a)
    with pytest.raises(MilvusException, match="replica_number=2 needs walvus searcher processes"):
        client.load_collection(a, replica_number=2)
    with pytest.raises(MilvusException, match="resource group not found"):
        client.load_collection(a, resource_groups=["rg1"])
    client.load_collection(a, replica_number=1, resource_groups=["__default_resource_group"])


def test_writes_through_a_switched_alias_use_the_new_collections_schema(client: MilvusClient) -> None:
    small, big = unique("small"), unique("big")
    client.create_collection(big, dimension=3)  # the older one: its schema timestamp is lower
    client.create_collection(small, dimension=2)
    alias = unique("alias")
    client.create_alias(small, alias)
    client.insert(alias, [{"id": 1, "vector": [1.0, 0.0]}])  # pymilvus caches the schema under the alias
    client.alter_alias(big, alias)
    client.insert(alias, [{"id": 1, "vector": [1.0, 0.0, 0.0]}])  # refreshed after SchemaMismatch
    assert client.get(big, ids=[1])[0]["vector"] == [1.0, 0.0, 0.0]
    assert client.get(small, ids=[1])[0]["vector"] == [1.0, 0.0]
