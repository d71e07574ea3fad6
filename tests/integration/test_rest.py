"""Milvus's RESTful API v2 against a real walvus (gateway, streams and indexer processes, Kafka,
Delta, FAISS), with a real HTTP client (httpx): what a REST user sees, and that it is the same
data the gRPC API (pymilvus) sees."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pymilvus import MilvusClient

from tests.procs import Deployment

pytestmark = pytest.mark.integration
USER = "root:Milvus"


class Rest:
    """POST /v2/vectordb/<path> with the deployment's user; returns the JSON answer."""

    def __init__(self, base: str, token: str | None = USER) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=f"{base}/v2/vectordb", headers=headers, timeout=60)

    def __call__(self, path: str, **body: Any) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    def ok(self, path: str, **body: Any) -> Any:
        answer = self(path, **body)
        assert answer["code"] == 0, answer
        return answer["data"]


@pytest.fixture(scope="module")
def walvus(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Rest, MilvusClient, str]]:
    dep = Deployment(kafka_bootstrap, tmp_path_factory.mktemp("rest"), WALVUS_USERS=USER)
    try:
        dep.start("streams", "indexer", "gateway")
        base = f"http://127.0.0.1:{dep.env['WALVUS_REST_PORT']}"
        rest = Rest(base)
        client = MilvusClient(dep.uri, token=USER)
        try:
            yield rest, client, base
        finally:
            client.close()
            rest.http.close()
    finally:
        dep.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def count(rest: Rest, name: str, **body: Any) -> int:
    rows = rest.ok(
        "/entities/query",
        collectionName=name,
        filter="",
        outputFields=["count(*)"],
        consistencyLevel="Strong",
        **body,
    )
    return rows[0]["count(*)"]


def test_quick_setup_collection_write_read_and_drop(walvus: tuple[Rest, MilvusClient, str]) -> None:
    rest, client, _ = walvus
    name = unique("docs")
    assert rest.ok("/collections/create", collectionName=name, dimension=4) == {}
    described = rest.ok("/collections/describe", collectionName=name)
    assert [f["name"] for f in described["fields"]] == ["id", "vector"]
    assert described["fields"][1]["params"] == [{"key": "dim", "value": "4"}]
    assert described["indexes"] == [{"fieldName": "vector", "indexName": "vector", "metricType": "COSINE"}]
    assert described["load"] == "LoadStateLoaded" and described["enableDynamicField"] is True
    assert name in rest.ok("/collections/list")
    assert rest.ok("/collections/has", collectionName=name) == {"has": True}

    rows = [
        {"id": i, "vector": [1.0, i / 10, 0.0, 0.0], "color": "red" if i % 2 else "blue"} for i in range(10)
    ]
    assert rest.ok("/entities/insert", collectionName=name, data=rows) == {
        "insertCount": 10,
        "insertIds": list(range(10)),
    }

    hits = rest.ok(
        "/entities/search",
        collectionName=name,
        data=[[1.0, 0.0, 0.0, 0.0]],
        filter='color == "red"',
        limit=3,
        outputFields=["color"],
        consistencyLevel="Strong",
    )
    assert [h["id"] for h in hits] == [1, 3, 5]  # the nearest red ones, nearest first
    assert {h["color"] for h in hits} == {"red"}
    assert hits[0]["distance"] >= hits[1]["distance"] >= hits[2]["distance"]
    page = rest.ok(
        "/entities/search",
        collectionName=name,
        data=[[1.0, 0.0, 0.0, 0.0]],
        limit=2,
        offset=2,
        consistencyLevel="Strong",
    )
    assert [h["id"] for h in page] == [2, 3]

    queried = rest.ok(
        "/entities/query",
        collectionName=name,
        filter="id < 3",
        outputFields=["id", "color"],
        consistencyLevel="Strong",
    )
    assert sorted((r["id"], r["color"]) for r in queried) == [(0, "blue"), (1, "red"), (2, "blue")]
    got = rest.ok("/entities/get", collectionName=name, id=[4, 7], outputFields=["color"])
    assert sorted((r["id"], r["color"]) for r in got) == [(4, "blue"), (7, "red")]

    upserted = rest.ok(
        "/entities/upsert",
        collectionName=name,
        data=[{"id": 4, "vector": [0.0, 0.0, 0.0, 1.0], "color": "green"}],
    )
    assert upserted == {"upsertCount": 1, "upsertIds": [4]}
    assert rest.ok("/entities/get", collectionName=name, id=4, outputFields=["color"]) == [
        {"id": 4, "color": "green"}
    ]

    assert rest.ok("/entities/delete", collectionName=name, filter="id in [0, 1]") == {}
    assert rest.ok("/entities/delete", collectionName=name, id=[9]) == {}
    assert count(rest, name) == 7
    # the same rows through the gRPC API
    seen = client.query(name, filter="id >= 0", output_fields=["color"], consistency_level="Strong")
    assert sorted(r["id"] for r in seen) == [2, 3, 4, 5, 6, 7, 8]
    assert {r["id"]: r["color"] for r in seen}[4] == "green"

    assert rest.ok("/collections/drop", collectionName=name) == {}
    assert rest.ok("/collections/has", collectionName=name) == {"has": False}
    assert name not in rest.ok("/collections/list")


def test_full_schema_with_index_params(walvus: tuple[Rest, MilvusClient, str]) -> None:
    rest, client, _ = walvus
    name = unique("full")
    schema = {
        "autoId": False,
        "enableDynamicField": False,
        "fields": [
            {
                "fieldName": "pk",
                "dataType": "VarChar",
                "isPrimary": True,
                "elementTypeParams": {"max_length": 32},
            },
            {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": "3"}},
            {"fieldName": "n", "dataType": "Int64"},
        ],
    }
    index = {
        "fieldName": "v",
        "indexName": "v_idx",
        "metricType": "L2",
        "params": {"index_type": "HNSW", "M": 8, "efConstruction": 64},
    }
    assert rest.ok("/collections/create", collectionName=name, schema=schema, indexParams=[index]) == {}
    assert rest.ok("/collections/get_load_state", collectionName=name)["loadState"] == "LoadStateLoaded"
    described = rest.ok("/indexes/describe", collectionName=name, indexName="v_idx")
    assert described[0]["indexType"] == "HNSW" and described[0]["metricType"] == "L2"
    assert described[0]["params"]["M"] == 8
    assert client.describe_collection(name)["fields"][0]["name"] == "pk"  # the gRPC API sees it too

    rows = [{"pk": f"k{i}", "v": [float(i), 0.0, 0.0], "n": i} for i in range(20)]
    assert rest.ok("/entities/insert", collectionName=name, data=rows)["insertCount"] == 20
    hits = rest.ok(
        "/entities/search",
        collectionName=name,
        data=[[2.1, 0.0, 0.0], [15.0, 0.0, 0.0]],
        limit=2,
        filter="n >= 2",
        outputFields=["n"],
        searchParams={"metricType": "L2", "params": {"ef": 32}},
        consistencyLevel="Strong",
    )
    assert [h["pk"] for h in hits] == ["k2", "k3", "k15", "k14"]
    answer = rest(
        "/entities/search", collectionName=name, data=[[0.0, 0.0, 0.0]], limit=2, consistencyLevel="Strong"
    )
    assert answer["topks"] == [2]
    fused = rest.ok(
        "/entities/hybrid_search",
        collectionName=name,
        search=[
            {"data": [[0.0, 0.0, 0.0]], "annsField": "v", "limit": 3},
            {"data": [[1.0, 0.0, 0.0]], "annsField": "v", "limit": 3},
        ],
        rerank={"strategy": "rrf", "params": {"k": 10}},
        limit=2,
        outputFields=["n"],
        consistencyLevel="Strong",
    )
    assert {h["pk"] for h in fused} == {"k0", "k1"}
    assert rest.ok("/entities/get", collectionName=name, id="k7", outputFields=["n"]) == [
        {"pk": "k7", "n": 7}
    ]
    assert rest.ok("/indexes/list", collectionName=name) == ["v_idx"]
    rest.ok("/collections/drop", collectionName=name)


def test_auth_failure_is_refused_and_changes_nothing(walvus: tuple[Rest, MilvusClient, str]) -> None:
    rest, _, base = walvus
    name = unique("auth")
    for headers in ({}, {"Authorization": "Bearer root:wrong"}, {"Authorization": "Bearer nobody"}):
        response = httpx.post(
            f"{base}/v2/vectordb/collections/create",
            json={"collectionName": name, "dimension": 4},
            headers=headers,
        )
        assert response.status_code == 401
        assert response.json() == {"code": 1800, "message": "user hasn't authenticated"}
    assert rest.ok("/collections/has", collectionName=name) == {"has": False}
    basic = httpx.post(f"{base}/v2/vectordb/collections/list", json={}, auth=("root", "Milvus"))
    assert basic.json()["code"] == 0


def test_bad_input_gets_a_clear_error_and_changes_nothing(walvus: tuple[Rest, MilvusClient, str]) -> None:
    rest, _, base = walvus
    name = unique("bad")
    rest.ok("/collections/create", collectionName=name, dimension=4)
    rest.ok("/entities/insert", collectionName=name, data=[{"id": 1, "vector": [1.0, 0.0, 0.0, 0.0]}])

    wrong_dim = rest("/entities/insert", collectionName=name, data=[{"id": 2, "vector": [1.0, 0.0, 0.0]}])
    assert wrong_dim["code"] != 0 and "dim" in wrong_dim["message"]
    missing_vector = rest("/entities/insert", collectionName=name, data=[{"id": 3}])
    assert missing_vector["code"] == 1804
    bad_search = rest("/entities/search", collectionName=name, data=[[1.0, 0.0]], consistencyLevel="Strong")
    assert bad_search["code"] == 1100 and "dim" in bad_search["message"]
    bad_filter = rest("/entities/query", collectionName=name, filter="id <<< 3")
    assert bad_filter["code"] == 1100
    assert count(rest, name) == 1

    unknown = rest("/entities/insert", collectionName=unique("nope"), data=[{"id": 1, "vector": [0.0] * 4}])
    assert unknown["code"] == 100 and "collection not found" in unknown["message"]
    assert rest("/collections/describe", collectionName=unique("nope"))["code"] == 100

    bad_index = rest(
        "/collections/create",
        collectionName=name + "_x",
        schema={
            "fields": [
                {"fieldName": "id", "dataType": "Int64", "isPrimary": True},
                {"fieldName": "v", "dataType": "FloatVector", "elementTypeParams": {"dim": 4}},
            ]
        },
        indexParams=[{"fieldName": "v", "metricType": "L2", "params": {"index_type": "NO_SUCH_INDEX"}}],
    )
    assert bad_index["code"] == 1100 and "NO_SUCH_INDEX" in bad_index["message"]
    assert rest.ok("/collections/has", collectionName=name + "_x") == {"has": False}  # nothing left behind
    assert rest("/collections/create", collectionName=name + "_y")["code"] == 1802  # no dimension, no schema
    assert rest("/entities/search", collectionName=name)["code"] == 1802
    malformed = httpx.post(
        f"{base}/v2/vectordb/collections/list",
        content=b"{not json",
        headers={"Authorization": f"Bearer {USER}"},
    )
    assert malformed.json()["code"] == 1801
    assert rest("/collections/list", dbName="no_such_db")["code"] == 800
    assert count(rest, name) == 1
    rest.ok("/collections/drop", collectionName=name)


def test_partitions_aliases_and_databases(walvus: tuple[Rest, MilvusClient, str]) -> None:
    rest, client, _ = walvus
    name = unique("parts")
    rest.ok("/collections/create", collectionName=name, dimension=2)
    rest.ok("/partitions/create", collectionName=name, partitionName="p1")
    assert rest.ok("/partitions/list", collectionName=name) == ["_default", "p1"]
    assert rest.ok("/partitions/has", collectionName=name, partitionName="p1") == {"has": True}
    rest.ok(
        "/entities/insert", collectionName=name, partitionName="p1", data=[{"id": 1, "vector": [1.0, 0.0]}]
    )
    rest.ok("/entities/insert", collectionName=name, data=[{"id": 2, "vector": [0.0, 1.0]}])
    assert count(rest, name, partitionNames=["p1"]) == 1
    rest.ok("/partitions/release", collectionName=name, partitionNames=["p1"])
    rest.ok("/partitions/load", collectionName=name, partitionNames=["p1"])

    alias = unique("alias")
    rest.ok("/aliases/create", collectionName=name, aliasName=alias)
    assert rest.ok("/aliases/describe", aliasName=alias) == {
        "aliasName": alias,
        "collectionName": name,
        "dbName": "default",
    }
    assert alias in rest.ok("/aliases/list")
    assert count(rest, alias) == 2  # data through the alias
    assert client.describe_alias(alias)["collection_name"] == name
    rest.ok("/aliases/drop", aliasName=alias)
    assert alias not in rest.ok("/aliases/list")

    db = unique("db")
    rest.ok("/databases/create", dbName=db)
    assert db in rest.ok("/databases/list")
    assert rest.ok("/databases/describe", dbName=db)["dbName"] == db
    rest.ok("/collections/create", dbName=db, collectionName=name, dimension=2)  # same name, other database
    assert rest.ok("/collections/list", dbName=db) == [name]
    rest.ok("/collections/drop", dbName=db, collectionName=name)
    rest.ok("/databases/drop", dbName=db)
    assert db not in rest.ok("/databases/list")
    assert count(rest, name) == 2  # the default database's collection is untouched
    rest.ok("/collections/drop", collectionName=name)
    assert rest.ok("/users/list") == client.list_users()  # users and roles: what gRPC answers
    assert rest.ok("/roles/list") == client.list_roles()
