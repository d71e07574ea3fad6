"""Databases through the real pymilvus MilvusClient: DDL, and names that are per database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymilvus import MilvusClient, MilvusException

from tests.memory import RunningGateway, running_gateway


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with running_gateway() as gw:
        yield gw


def test_database_ddl_and_properties(client: MilvusClient) -> None:
    client.create_database("db_ddl", properties={"key1": "value1"})
    assert client.list_databases() == ["default", "db_ddl"]
    assert client.describe_database("db_ddl")["key1"] == "value1"
    client.alter_database_properties("db_ddl", properties={"key": "value"})
    assert client.describe_database("db_ddl")["key"] == "value"
    client.drop_database_properties("db_ddl", property_keys=["key"])
    assert "key" not in client.describe_database("db_ddl")
    with pytest.raises(MilvusException, match="database already exist: db_ddl"):
        client.create_database("db_ddl")
    with pytest.raises(MilvusException, match="can not drop default database"):
        client.drop_database("default")
    with pytest.raises(MilvusException, match="Invalid database name"):
        client.create_database("bad-name")
    client.drop_database("db_ddl")
    client.drop_database("db_ddl")  # Milvus: dropping a missing database succeeds
    assert client.list_databases() == ["default"]
    with pytest.raises(MilvusException, match="database not found") as err:
        client.describe_database("db_ddl")
    assert err.value.code == 800


def test_collections_and_aliases_are_per_database(gw: RunningGateway, client: MilvusClient) -> None:
    client.create_database("db_a")
    client.create_collection("docs", dimension=2)
    client.insert("docs", [{"id": 1, "vector": [1.0, 0.0], "where": "default"}])
    other = MilvusClient(gw.uri, db_name="db_a")
    try:
        assert other.list_collections() == []
        other.create_collection("docs", dimension=2)  # the same name, another database
        other.insert("docs", [{"id": 1, "vector": [1.0, 0.0], "where": "db_a"}])
        assert other.get("docs", ids=[1])[0]["where"] == "db_a"
        assert client.get("docs", ids=[1])[0]["where"] == "default"
        assert (
            other.describe_collection("docs")["collection_id"]
            != client.describe_collection("docs")["collection_id"]
        )
        other.create_alias("docs", "current")
        assert other.describe_alias("current")["db_name"] == "db_a"
        with pytest.raises(MilvusException, match="alias not found"):
            client.describe_alias("current")
        assert (
            other.search("current", [[1.0, 0.0]], limit=1, output_fields=["where"])[0][0]["entity"]["where"]
            == "db_a"
        )
        with pytest.raises(MilvusException, match="database:db_a not empty"):
            client.drop_database("db_a")
        client.use_database("db_a")
        assert client.list_collections() == ["docs"] and client.list_aliases()["aliases"] == ["current"]
        client.use_database("default")
        # rename across databases (Milvus allows it; a collection with aliases must drop them first)
        with pytest.raises(MilvusException, match="must drop all aliases"):
            other.rename_collection("docs", "moved", target_db="default")
        other.drop_alias("current")
        other.rename_collection("docs", "moved", target_db="default")
        assert other.list_collections() == []
        assert client.get("moved", ids=[1])[0]["where"] == "db_a"
        with pytest.raises(MilvusException, match="database not found"):
            client.rename_collection("moved", "x", target_db="nowhere")
        other.drop_database("db_a")
        with pytest.raises(MilvusException, match="database not found") as err:
            other.list_collections()
        assert err.value.code == 800
    finally:
        other.close()
