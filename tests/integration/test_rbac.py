"""Users, roles and privileges against a real walvus with authorization enabled (Kafka, Delta, gRPC,
the real pymilvus client): refused calls change and reveal nothing, grants and revokes take effect
at once, and everything survives a gateway restart."""

from __future__ import annotations

import time
import uuid

import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from tests.integration.search_support import create_flat_collection
from tests.integration.test_cdc_support import namespace_api, new_cdc
from tests.procs import Deployment
from walvus.rbac_ddl import RbacDdl

pytestmark = pytest.mark.integration
ROOT_PASSWORD = "r00t-secret"
DIM = 2


@pytest.fixture(scope="module")
def site(kafka_bootstrap, tmp_path_factory):
    dep = Deployment(
        kafka_bootstrap,
        tmp_path_factory.mktemp("rbac"),
        WALVUS_AUTHORIZATION_ENABLED="true",
        WALVUS_ROOT_PASSWORD=ROOT_PASSWORD,
    )
    try:
        dep.start("streams", "gateway")
        root = MilvusClient(dep.uri, user="root", password=ROOT_PASSWORD)
        create_flat_collection(root, "docs", DIM, consistency_level="Strong")
        root.insert("docs", [{"id": i, "vec": [float(i), 0.0], "n": i} for i in range(10)])
        create_flat_collection(root, "secret", DIM, consistency_level="Strong")
        root.insert("secret", [{"id": 1, "vec": [1.0, 1.0], "n": 99}])
        root.create_alias("docs", "docs_alias")
        root.create_database("db1")
        yield dep, root
        root.close()
    finally:
        dep.close()


def _user(dep: Deployment, root: MilvusClient, name: str, password: str = "pass-word1") -> MilvusClient:
    root.create_user(name, password)
    return MilvusClient(dep.uri, user=name, password=password)


def _denied(call, privilege: str) -> MilvusException:
    with pytest.raises(MilvusException) as err:
        call()
    assert err.value.code == 1401, err.value
    assert f"Privilege{privilege}: permission deny to" in err.value.message
    return err.value


def _count(root: MilvusClient, name: str) -> int:
    return int(root.query(name, filter="", output_fields=["count(*)"])[0]["count(*)"])


def test_logins_are_checked(site) -> None:
    dep, root = site
    for kwargs in ({}, {"user": "root", "password": "Milvus"}, {"user": "nobody", "password": "whatever1"}):
        with pytest.raises(MilvusException, match="auth check failure") as err:
            MilvusClient(dep.uri, **kwargs).list_collections()
        assert err.value.code == 1800
    assert "root" in root.list_users()
    with pytest.raises(MilvusException, match="root user cannot be deleted"):
        root.drop_user("root")


def test_a_user_without_privileges_gets_permission_errors_and_nothing_leaks(site) -> None:
    dep, root = site
    eve = _user(dep, root, "eve")
    try:
        _denied(lambda: eve.search("docs", [[1.0, 0.0]], limit=3), "Search")
        _denied(lambda: eve.query("docs", filter="id >= 0"), "Query")
        _denied(lambda: eve.insert("docs", [{"id": 100, "vec": [0.0, 0.0], "n": 0}]), "Insert")
        _denied(lambda: eve.delete("docs", ids=[1]), "Delete")
        _denied(lambda: eve.drop_collection("docs"), "DropCollection")
        _denied(lambda: eve.create_user("mallory", "pass-word1"), "CreateOwnership")
        _denied(lambda: eve.grant_role("eve", "admin"), "ManageOwnership")
        assert eve.list_collections() == []  # names are not revealed either
        assert _count(root, "docs") == 10 and root.has_collection("docs")
        assert "mallory" not in root.list_users() and root.describe_user("eve")["roles"] == ()
    finally:
        eve.close()


def test_grant_allows_and_revoke_denies_again(site) -> None:
    dep, root = site
    alice = _user(dep, root, "alice")
    root.create_role("searcher")
    root.grant_role("alice", "searcher")
    root.grant_privilege("searcher", "Collection", "Search", "docs")
    hits = alice.search("docs", [[3.0, 0.0]], limit=1, output_fields=["n"])
    assert hits[0][0]["entity"]["n"] == 3
    assert alice.search("docs_alias", [[3.0, 0.0]], limit=1)[0][0]["id"] == 3  # an alias is its collection
    assert alice.list_collections() == ["docs"]
    _denied(lambda: alice.search("secret", [[1.0, 1.0]], limit=1), "Search")
    _denied(lambda: alice.query("docs", filter="id >= 0"), "Query")
    alice_db1 = MilvusClient(dep.uri, user="alice", password="pass-word1", db_name="db1")
    _denied(lambda: alice_db1.search("docs", [[3.0, 0.0]], limit=1), "Search")  # grants are per database
    alice_db1.close()
    grants = root.describe_role("searcher")["privileges"]
    assert [(g["object_type"], g["object_name"], g["privilege"]) for g in grants] == [
        ("Collection", "docs", "Search")
    ]
    root.revoke_privilege("searcher", "Collection", "Search", "docs")
    _denied(lambda: alice.search("docs", [[3.0, 0.0]], limit=1), "Search")
    root.grant_privilege("searcher", "Collection", "Search", "docs")
    root.revoke_role("alice", "searcher")
    _denied(lambda: alice.search("docs", [[3.0, 0.0]], limit=1), "Search")
    alice.close()


def test_privilege_groups_and_builtin_groups(site) -> None:
    dep, root = site
    bob = _user(dep, root, "bob")
    root.create_role("readers")
    root.grant_role("bob", "readers")
    root.create_privilege_group("query_only")
    root.add_privileges_to_group("query_only", ["Query", "Search"])
    root.remove_privileges_from_group("query_only", ["Search"])
    assert {"privilege_group": "query_only", "privileges": ("Query",)} in root.list_privilege_groups()
    root.grant_privilege_v2("readers", "query_only", "docs")
    assert len(bob.query("docs", filter="id < 5")) == 5
    _denied(lambda: bob.search("docs", [[1.0, 0.0]], limit=1), "Search")
    with pytest.raises(MilvusException, match="Use REVOKE API"):
        root.drop_privilege_group("query_only")

    root.grant_privilege_v2("readers", "CollectionReadOnly", "*", "default")
    assert len(bob.search("secret", [[1.0, 1.0]], limit=1)[0]) == 1
    _denied(lambda: bob.insert("secret", [{"id": 2, "vec": [0.0, 0.0], "n": 0}]), "Insert")
    with pytest.raises(MilvusException, match="should be \\* for the cluster level"):
        root.grant_privilege_v2("readers", "ClusterReadOnly", "*", "default")
    root.grant_privilege_v2("readers", "DatabaseAdmin", "*", "db1")
    bob_db1 = MilvusClient(dep.uri, user="bob", password="pass-word1", db_name="db1")
    schema = bob_db1.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    bob_db1.create_collection("made_by_bob", schema=schema)
    assert bob_db1.list_collections() == ["made_by_bob"]
    _denied(lambda: bob.create_collection("not_here", schema=schema), "CreateCollection")
    bob_db1.close()
    root.revoke_privilege_v2("readers", "query_only", "docs")
    root.drop_privilege_group("query_only")
    with pytest.raises(MilvusException, match="has privileges"):
        root.drop_role("readers")
    root.drop_role("readers", force_drop=True)
    _denied(lambda: bob.search("secret", [[1.0, 1.0]], limit=1), "Search")
    assert "readers" not in root.list_roles()
    bob.close()


def test_admin_role_and_own_password(site) -> None:
    dep, root = site
    carol = _user(dep, root, "carol", "first-pass")
    carol.update_password("carol", "first-pass", "second-pass")  # a user may change its own
    with pytest.raises(MilvusException, match="auth check failure"):
        MilvusClient(dep.uri, user="carol", password="first-pass").list_collections()
    carol = MilvusClient(dep.uri, user="carol", password="second-pass")
    _denied(lambda: carol.update_password("alice", "pass-word1", "hijacked1"), "UpdateUser")
    root.grant_role("carol", "admin")
    carol.create_collection("by_admin", dimension=DIM)
    assert "by_admin" in carol.list_collections()
    carol.drop_collection("by_admin")
    carol.close()


def test_users_roles_and_grants_survive_a_restart_and_every_process_sees_them(site) -> None:
    dep, root = site
    dave = _user(dep, root, "dave", "dave-pass")
    root.create_role("restart_role", description="kept")
    root.grant_role("dave", "restart_role")
    root.grant_privilege_v2("restart_role", "Query", "docs")
    dave.close()
    other = dep.api().catalog.rbac  # another process reading the catalog topic
    assert other.user("dave") is not None and other.roles_of("dave") == ["restart_role"]
    assert other.user("dave").password_hash.startswith("$argon2id$")  # type: ignore[union-attr]

    dep.stop("gateway")
    dep.start("gateway")
    root2 = MilvusClient(dep.uri, user="root", password=ROOT_PASSWORD)
    dave = MilvusClient(dep.uri, user="dave", password="dave-pass")
    assert len(dave.query("docs", filter="id < 3")) == 3
    _denied(lambda: dave.search("docs", [[1.0, 0.0]], limit=1), "Search")
    assert root2.describe_user("dave")["roles"] == ("restart_role",)
    assert root2.describe_role("restart_role")["description"] == "kept"
    with pytest.raises(MilvusException, match="auth check failure"):
        MilvusClient(dep.uri, user="dave", password="wrong-pass").list_collections()
    dave.close()
    root2.close()


def test_cdc_replicates_users_and_grants_only_when_asked(kafka_bootstrap, tmp_path) -> None:
    uid = uuid.uuid4().hex[:8]
    ns_a, ns_b, ns_c = f"rba{uid}", f"rbb{uid}", f"rbc{uid}"
    a, b, c = (namespace_api(kafka_bootstrap, ns) for ns in (ns_a, ns_b, ns_c))
    cdc = new_cdc(tmp_path / "cdc")
    try:
        rbac = RbacDdl(a, "Milvus")
        rbac.create_user("alice", "pass-word1")
        rbac.create_role("reader")
        rbac.grant_role("alice", "reader")
        rbac.grant(rbac.v2_grant("reader", "CollectionReadOnly", "default", "*", "root"))
        a.databases.create("sales")
        ep = {"bootstrap": kafka_bootstrap}
        for target, extra in ((ns_b, {"rbac": True}), (ns_c, {})):
            cdc.client.create(
                {
                    "name": f"{target}-task",
                    "source": {**ep, "namespace": ns_a, "site": ns_a},
                    "target": {**ep, "namespace": target, "site": target},
                    **extra,
                }
            )
        cdc.wait_caught_up(f"{ns_b}-task")
        cdc.wait_caught_up(f"{ns_c}-task")
        deadline = time.monotonic() + 60
        while b.catalog.rbac.user("alice") is None or c.catalog.database("sales") is None:
            assert time.monotonic() < deadline, f"not replicated:\n{cdc.log_tail()}"
            time.sleep(0.1)
        assert b.catalog.rbac.roles_of("alice") == ["reader"]
        assert b.catalog.rbac.allowed("alice", "Search", "docs", "default")
        assert RbacDdl(b, "Milvus").authenticate("alice", "pass-word1")
        assert c.catalog.rbac.user("alice") is None and c.catalog.rbac.role("reader") is None
    finally:
        cdc.stop()
        for api in (a, b, c):
            api.close()
