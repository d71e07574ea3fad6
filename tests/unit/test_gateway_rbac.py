"""The RBAC RPCs and their enforcement through the real pymilvus client, over the in-memory gateway."""

from __future__ import annotations

import pytest
from pymilvus import MilvusClient, MilvusException

from schemas.wal import Op
from tests.memory import running_gateway


@pytest.fixture
def gw():
    with running_gateway(authorization_enabled=True) as gw:
        root = MilvusClient(gw.uri, user="root", password="Milvus")
        root.create_collection("docs", dimension=2)
        root.insert("docs", [{"id": 1, "vector": [1, 2]}])
        gw.root = root  # type: ignore[attr-defined]
        yield gw
        root.close()


def _denied(call) -> MilvusException:
    with pytest.raises(MilvusException) as err:
        call()
    assert err.value.code == 1401
    return err.value


def test_denied_writes_change_nothing(gw) -> None:
    root = gw.root
    root.create_user("eve", "pass-word1")
    eve = MilvusClient(gw.uri, user="eve", password="pass-word1")
    inserts = len(gw.log.records(Op.INSERT))
    err = _denied(lambda: eve.insert("docs", [{"id": 2, "vector": [0, 0]}]))
    assert err.message == "PrivilegeInsert: permission deny to eve in the `default` database"
    assert len(gw.log.records(Op.INSERT)) == inserts
    _denied(lambda: eve.create_role("mine"))
    assert root.list_roles() == ["admin", "public"]
    assert eve.describe_collection("docs")["collection_name"] == "docs"  # the public role's default
    assert eve.describe_user("eve") == {"user_name": "eve", "roles": (), "description": ""}  # itself
    _denied(lambda: eve.describe_user("root"))


def test_user_and_role_lifecycle(gw) -> None:
    root = gw.root
    root.create_user("u1", "pass-word1", description="first")
    with pytest.raises(MilvusException, match="user already exists:u1"):
        root.create_user("u1", "pass-word2")
    with pytest.raises(MilvusException, match="length of password"):
        root.create_user("u2", "short")
    with pytest.raises(MilvusException, match="invalid user name"):
        root.create_user("1bad", "pass-word1")
    root.create_role("r1", description="desc")
    with pytest.raises(MilvusException, match="already exists"):
        root.create_role("r1")
    with pytest.raises(MilvusException, match="default role"):
        root.drop_role("admin")
    root.grant_role("u1", "r1")
    root.grant_role("u1", "r1")  # twice: no change
    assert root.describe_user("u1") == {"user_name": "u1", "roles": ("r1",), "description": "first"}
    with pytest.raises(MilvusException, match="not found the role"):
        root.grant_role("u1", "nope")
    with pytest.raises(MilvusException, match="not found the object type"):
        root.grant_privilege("r1", "Table", "Search", "docs")
    with pytest.raises(MilvusException, match="not found the privilege name\\[CreateCollection\\] in object"):
        root.grant_privilege("r1", "Collection", "CreateCollection", "docs")
    root.drop_user("u1")
    root.drop_user("u1")  # a missing user: succeeds, as in Milvus
    assert root.list_users() == ["root"]
    assert root.describe_user("u1") == {}
    root.drop_role("r1")
    assert root.describe_role("r1")["privileges"] == []


def test_v2_grants_and_groups_are_described(gw) -> None:
    root = gw.root
    root.create_role("r")
    root.create_privilege_group("pg")
    root.add_privileges_to_group("pg", ["Search", "Query"])
    with pytest.raises(MilvusException, match="not a valid privilege"):
        root.add_privileges_to_group("pg", ["CollectionAdmin"])
    with pytest.raises(MilvusException, match="built in privileges"):
        root.create_privilege_group("CollectionAdmin")
    root.grant_privilege_v2("r", "pg", "*")
    root.grant_privilege_v2("r", "ClusterAdmin", "*", "*")
    root.grant_privilege_v2("r", "CollectionReadWrite", "col1", "db1")
    rows = {(p["object_type"], p["object_name"], p.get("db_name"), p["privilege"])
            for p in root.describe_role("r", db_name="*")["privileges"]}  # fmt: skip
    assert rows == {
        ("Collection", "*", "default", "pg"),
        ("Global", "*", "*", "ClusterAdmin"),
        ("Collection", "col1", "db1", "CollectionReadWrite"),
    }
    assert {(p["privilege"]) for p in root.describe_role("r")["privileges"]} == {"pg", "ClusterAdmin"}


def test_disabled_authorization_keeps_todays_behaviour() -> None:
    with running_gateway() as gw:
        anyone = MilvusClient(gw.uri, user="x", password="y")
        anyone.create_collection("c", dimension=2)
        anyone.create_user("alice", "pass-word1")  # the API works; nothing is enforced
        anyone.create_role("r")
        assert anyone.list_users() == ["alice", "root"]
        alice = MilvusClient(gw.uri, user="alice", password="wrong")
        assert alice.list_collections() == ["c"]


def test_fixed_users_and_authorization_do_not_mix() -> None:
    with (
        pytest.raises(ValueError, match="WALVUS_USERS"),
        running_gateway(users="a:b", authorization_enabled=True),
    ):
        pass
