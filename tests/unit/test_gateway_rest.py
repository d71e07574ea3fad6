"""The REST API's translation layer over the in-memory gateway (no Kafka): shapes, errors, auth,
and that REST and gRPC share one servicer (what one writes, the other reads)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from pymilvus import MilvusClient, MilvusException

from gateway.rest.app import credentials
from tests.memory import RunningGateway, running_gateway

_names = itertools.count()


def unique(prefix: str = "c") -> str:
    return f"{prefix}_{next(_names)}"


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    with running_gateway(rest=True) as gw:
        yield gw


def post(gw: RunningGateway, path: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{gw.rest_uri}/v2/vectordb{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_credentials_from_bearer_and_basic() -> None:
    assert credentials("Bearer root:Milvus") == "root:Milvus"
    assert credentials("Basic cm9vdDpNaWx2dXM=") == "root:Milvus"
    assert credentials("Basic !!!") is None
    assert credentials("") is None


def test_rest_writes_are_grpc_reads_and_back(gw: RunningGateway) -> None:
    name = unique()
    assert post(gw, "/collections/create", collectionName=name, dimension=2) == {"code": 0, "data": {}}
    rows = [{"id": i, "vector": [1.0, float(i)], "tag": f"t{i}"} for i in range(4)]
    assert post(gw, "/entities/insert", collectionName=name, data=rows)["data"]["insertCount"] == 4
    client = MilvusClient(gw.uri)
    assert sorted(r["id"] for r in client.query(name, filter="id >= 0", consistency_level="Strong")) == [
        0,
        1,
        2,
        3,
    ]
    client.insert(name, [{"id": 10, "vector": [0.0, 1.0], "tag": "grpc"}])
    got = post(gw, "/entities/get", collectionName=name, id=10, outputFields=["tag"])
    assert got == {"code": 0, "data": [{"id": 10, "tag": "grpc"}]}
    client.close()


def test_search_shape_offset_and_topks(gw: RunningGateway) -> None:
    name = unique()
    post(gw, "/collections/create", collectionName=name, dimension=2, metricType="L2")
    post(
        gw,
        "/entities/insert",
        collectionName=name,
        data=[{"id": i, "vector": [float(i), 0.0]} for i in range(6)],
    )
    answer = post(
        gw,
        "/entities/search",
        collectionName=name,
        data=[[0.0, 0.0], [5.0, 0.0]],
        limit=2,
        offset=1,
        consistencyLevel="Strong",
    )
    assert answer["topks"] == [2, 2]
    assert [(h["id"], h["distance"]) for h in answer["data"]] == [(1, 1.0), (2, 4.0), (4, 1.0), (3, 4.0)]


def test_errors_name_the_problem(gw: RunningGateway) -> None:
    name = unique()
    assert post(gw, "/collections/describe", collectionName=name)["code"] == 100
    assert post(gw, "/collections/create")["code"] == 1802
    assert post(gw, "/collections/create", collectionName=name, dimension="4")["code"] == 1801
    assert post(gw, "/entities/query", collectionName=name, consistencyLevel="Sometimes")["code"] == 1100
    post(gw, "/collections/create", collectionName=name, dimension=2)
    assert post(gw, "/entities/insert", collectionName=name, data=[{"vector": [0.0, 1.0]}])["code"] == 1804
    assert post(gw, "/entities/get", collectionName=name, id="one")["code"] == 1806
    bad_rerank = post(
        gw,
        "/entities/hybrid_search",
        collectionName=name,
        search=[{"data": [[0.0, 1.0]]}],
        rerank={"strategy": "best"},
    )
    assert bad_rerank["code"] == 1100 and "rrf or weighted" in bad_rerank["message"]
    refused = post(
        gw,
        "/collections/create",
        collectionName=unique(),
        dimension=2,
        params={"partitionKeyIsolation": True},
    )
    assert refused["code"] == 1100 and "partitionKeyIsolation" in refused["message"]
    assert (
        post(gw, "/collections/create", collectionName=unique(), dimension=2, params={"shardsNum": "x"})[
            "code"
        ]
        == 1100
    )
    scored = post(
        gw, "/entities/search", collectionName=name, data=[[0.0, 1.0]], functionScore={"functions": [{}]}
    )
    assert scored["code"] == 3000 and "functionScore" in scored["message"]
    not_found = httpx.post(f"{gw.rest_uri}/v2/vectordb/collections/teleport", json={})
    assert not_found.status_code == 404 and not_found.json()["code"] == 3000


def test_auth_uses_the_gateway_users() -> None:
    with running_gateway(rest=True, users="alice:secret") as gw:
        url = f"{gw.rest_uri}/v2/vectordb/collections/list"
        refused = httpx.post(url, json={})
        assert refused.status_code == 401 and refused.json() == {
            "code": 1800,
            "message": "user hasn't authenticated",
        }
        assert httpx.post(url, json={}, headers={"Authorization": "Bearer alice:wrong"}).status_code == 401
        assert httpx.post(url, json={}, headers={"Authorization": "Bearer alice:secret"}).json() == {
            "code": 0,
            "data": [],
        }
        assert httpx.post(url, json={}, auth=("alice", "secret")).json()["code"] == 0


def test_int64_as_strings_when_the_client_cannot_take_them(gw: RunningGateway) -> None:
    name = unique()
    url = f"{gw.rest_uri}/v2/vectordb"
    no_int64 = {"Accept-Type-Allow-Int64": "false"}
    post(gw, "/collections/create", collectionName=name, dimension=2)
    big = 2**62 + 1  # not a double
    inserted = httpx.post(
        f"{url}/entities/insert",
        json={"collectionName": name, "data": [{"id": big, "vector": [1.0, 0.0]}]},
        headers=no_int64,
    ).json()
    assert inserted["data"]["insertIds"] == [str(big)]
    got = httpx.post(f"{url}/entities/get", json={"collectionName": name, "id": big}, headers=no_int64).json()
    assert got["data"][0]["id"] == str(big)
    hits = httpx.post(
        f"{url}/entities/search",
        json={"collectionName": name, "data": [[1.0, 0.0]], "limit": 1, "consistencyLevel": "Strong"},
        headers=no_int64,
    ).json()
    assert hits["data"][0]["id"] == str(big)
    assert post(gw, "/entities/get", collectionName=name, id=big)["data"][0]["id"] == big  # default: numbers


def test_users_and_roles_answer_what_the_grpc_api_answers(gw: RunningGateway) -> None:
    """Translated to the RBAC RPCs: where the servicer does not implement them, REST says so
    (code 3000, the RPC's name) and creates nothing; where it does, REST and gRPC agree."""
    client = MilvusClient(gw.uri)
    try:
        users = client.list_users()
    except (MilvusException, grpc.RpcError):  # pymilvus lets UNIMPLEMENTED through as is
        answer = post(gw, "/users/list")
        assert answer["code"] == 3000 and "ListCredUsers" in answer["message"]
        created = post(gw, "/roles/create", roleName=unique("role"))
        assert created["code"] == 3000 and "CreateRole" in created["message"]
    else:
        assert post(gw, "/users/list") == {"code": 0, "data": users}
        role = unique("role")
        assert post(gw, "/roles/create", roleName=role)["code"] == 0
        assert role in client.list_roles()
        assert role in post(gw, "/roles/list")["data"]
        assert post(gw, "/roles/drop", roleName=role)["code"] == 0
    finally:
        client.close()


def test_rest_callers_are_checked_against_their_grants() -> None:
    """With authorization on, a REST login is a stored user, and every call is checked against that
    user's privileges exactly as over gRPC: a reader can query, not search or insert."""
    with running_gateway(rest=True, authorization_enabled=True) as gw:
        url = f"{gw.rest_uri}/v2/vectordb"

        def call(path: str, login: str = "root:Milvus", **body: Any) -> dict[str, Any]:
            return httpx.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {login}"}).json()

        name, role = unique(), unique("reader")
        assert call("/collections/create", collectionName=name, dimension=2)["code"] == 0
        assert (
            call("/entities/insert", collectionName=name, data=[{"id": 1, "vector": [1.0, 0.0]}])["code"] == 0
        )
        assert call("/users/create", userName="bob", password="bob-secret-1")["code"] == 0
        assert call("/roles/create", roleName=role)["code"] == 0
        grant = {"roleName": role, "privilege": "Query", "dbName": "default", "collectionName": name}
        assert call("/roles/grant_privilege_v2", **grant)["code"] == 0
        assert call("/users/grant_role", userName="bob", roleName=role)["code"] == 0
        assert call("/users/describe", userName="bob")["data"] == [role]
        assert "bob" in call("/users/list")["data"]

        bob = "bob:bob-secret-1"
        rows = call("/entities/query", bob, collectionName=name, filter="id > 0", outputFields=["id"])
        assert rows == {"code": 0, "data": [{"id": 1}]}
        denied = call("/entities/insert", bob, collectionName=name, data=[{"id": 2, "vector": [0.0, 1.0]}])
        assert denied["code"] == 1401 and "PrivilegeInsert" in denied["message"]
        assert call("/entities/search", bob, collectionName=name, data=[[1.0, 0.0]])["code"] == 1401
        count = call("/entities/query", collectionName=name, filter="", outputFields=["count(*)"])
        assert count["data"] == [{"count(*)": 1}]  # the refused insert wrote nothing
        wrong = httpx.post(f"{url}/collections/list", json={}, headers={"Authorization": "Bearer bob:nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == 1800
