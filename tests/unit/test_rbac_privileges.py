"""The RPC -> privilege table and the grant rules, without anything running."""

from __future__ import annotations

import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.privileges import OPEN, RULES
from gateway.service import SERVICE, MilvusServicer
from schemas.privileges import BUILTIN_GROUPS, COLLECTION_READ_ONLY, OBJECT_PRIVILEGES, PRIVILEGES, level
from schemas.rbac import Grant, PrivilegeGroup, RbacUser, RoleMember, decode_rbac
from tests.memory import MemorySearcher, memory_walvus
from walvus.rbac import RbacState


def _proto_rule(method: str) -> tuple[str, str, str | None] | None:
    """Milvus's own answer: the privilege_ext_obj option on the request message."""
    desc = SERVICE.methods_by_name[method].input_type
    opts = desc.GetOptions()
    if not opts.HasExtension(common_pb2.privilege_ext_obj):
        return None
    ext = opts.Extensions[common_pb2.privilege_ext_obj]
    index = ext.object_name_index or ext.object_name_indexs
    field = next((f.name for f in desc.fields if f.number == index), None) if index > 0 else None
    privilege = common_pb2.ObjectPrivilege.Name(ext.object_privilege).removeprefix("Privilege")
    return common_pb2.ObjectType.Name(ext.object_type), privilege, field


def _implemented() -> list[str]:
    walvus = memory_walvus()
    return sorted(MilvusServicer(walvus, MemorySearcher(walvus)).implemented)


def test_every_implemented_rpc_is_classified() -> None:
    for name in _implemented():
        assert (name in RULES) != (name in OPEN), name


@pytest.mark.parametrize("method", sorted(RULES))
def test_table_matches_milvus_proto_options(method: str) -> None:
    rule = RULES[method]
    expected = _proto_rule(method)
    assert expected is not None, f"{method}: Milvus attaches no privilege to it"
    object_type, privilege, field = expected
    assert (rule.object_type, rule.privilege) == (object_type, privilege)
    top = rule.name_field.split(".")[0] if rule.name_field else None
    assert top == field


@pytest.mark.parametrize("method", sorted(OPEN))
def test_open_rpcs_carry_no_privilege_in_milvus(method: str) -> None:
    assert _proto_rule(method) is None


def test_object_names_come_from_the_request() -> None:
    assert RULES["Search"].object_names(milvus_pb2.SearchRequest(collection_name="c")) == ["c"]
    assert RULES["Flush"].object_names(milvus_pb2.FlushRequest(collection_names=["a", "b"])) == ["a", "b"]
    assert RULES["CreateCollection"].object_names(milvus_pb2.CreateCollectionRequest()) == ["*"]
    req = milvus_pb2.SelectUserRequest(user=milvus_pb2.UserEntity(name="bob"))
    assert RULES["SelectUser"].object_names(req) == ["bob"]


def test_builtin_groups_and_levels() -> None:
    assert set(COLLECTION_READ_ONLY) < set(BUILTIN_GROUPS["CollectionReadWrite"])
    assert "CreateAlias" in BUILTIN_GROUPS["CollectionAdmin"]
    assert "CreateAlias" not in BUILTIN_GROUPS["CollectionReadWrite"]
    assert set(BUILTIN_GROUPS["DatabaseAdmin"]) == {
        "ShowCollections", "DescribeDatabase", "AlterDatabase", "CreateCollection", "DropCollection"
    }  # fmt: skip
    assert level("Search") == "Collection" and level("CreateCollection") == "Database"
    assert level("CreateDatabase") == "Cluster" and level("ClusterReadOnly") == "Cluster"
    every_rule_privilege = {r.privilege for r in RULES.values()}
    assert every_rule_privilege <= PRIVILEGES
    assert "Search" in OBJECT_PRIVILEGES["Collection"] and "Search" not in OBJECT_PRIVILEGES["Global"]


def _state(*records: object) -> RbacState:
    state = RbacState()
    for r in records:
        state.apply(r.key, r)  # type: ignore[attr-defined]
    return state


def test_grants_apply_in_their_database_to_their_object() -> None:
    s = _state(RoleMember("alice", "r"), Grant("r", "Collection", "docs", "default", "Search"))
    assert s.allowed("alice", "Search", "docs", "default")
    assert not s.allowed("alice", "Search", "news", "default")
    assert not s.allowed("alice", "Search", "docs", "db1")
    assert not s.allowed("alice", "Query", "docs", "default")
    assert not s.allowed("bob", "Search", "docs", "default")
    assert s.allowed("root", "DropDatabase", "*", "any")


def test_wildcards_groups_related_and_admin() -> None:
    s = _state(
        RoleMember("alice", "r"),
        Grant("r", "Collection", "*", "*", "CollectionReadWrite"),
        PrivilegeGroup("g", ("Insert",)),
        RoleMember("bob", "r2"),
        Grant("r2", "Global", "*", "default", "g"),
        RoleMember("carol", "admin"),
    )
    assert s.allowed("alice", "Insert", "anything", "db9")
    assert s.allowed("alice", "GetLoadState", "x", "default")  # related to Load
    assert not s.allowed("alice", "CreateAlias", "x", "default")
    assert s.allowed("bob", "Insert", "x", "default") and not s.allowed("bob", "Insert", "x", "db1")
    assert s.allowed("carol", "DropDatabase", "*", "default")
    # the public role's defaults: everyone may describe collections and indexes
    assert s.allowed("dave", "DescribeCollection", "*", "default")
    assert s.allowed("dave", "IndexDetail", "docs", "default")
    assert not s.allowed("dave", "Search", "docs", "default")


def test_dropped_records_stop_counting() -> None:
    member = RoleMember("alice", "r")
    grant = Grant("r", "Collection", "docs", "default", "Search")
    s = _state(member, grant)
    s.apply(grant.key, Grant("r", "Collection", "docs", "default", "Search", state="dropped"))
    assert not s.allowed("alice", "Search", "docs", "default")
    assert s.visible_names("alice", "default") == set()


def test_records_round_trip_without_passwords() -> None:
    user = RbacUser("alice", "$argon2id$v=19$...", "d")
    back = decode_rbac(user.key, user.to_json())
    assert back == user and b"secret" not in user.to_json()
    group = PrivilegeGroup("g", ("Search", "Query"))
    assert decode_rbac(group.key, group.to_json()) == group
