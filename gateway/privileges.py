"""Which privilege each RPC needs: the one table the gateway checks every call against.

``RULES[rpc] = Rule(object type, privilege, object-name field)``, with Milvus's names (each
request message of Milvus's proto carries the same facts as a ``privilege_ext_obj`` option; a unit
test holds this table to them). The object name is read from the request: a collection name
(aliases resolve to their collection), a user name, or ``*`` for Global objects; ``Flush`` names
several collections and needs the privilege on each.

``OPEN`` RPCs need no privilege, only a login (Milvus: the same ones carry no option);
``ShowCollections`` and ``ListDatabases`` then answer only what the caller may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.privileges import ANY, COLLECTION, GLOBAL, USER


@dataclass(frozen=True)
class Rule:
    object_type: str
    privilege: str
    name_field: str | None = None  # the request field naming the object; None: Global "*"

    def object_names(self, request: Any) -> list[str]:
        if self.name_field is None:
            return [ANY]
        value: Any = request
        for part in self.name_field.split("."):
            value = getattr(value, part)
        return [str(v) for v in value] if not isinstance(value, str) else [value]


def _g(privilege: str) -> Rule:
    return Rule(GLOBAL, privilege)


def _c(privilege: str, name_field: str = "collection_name") -> Rule:
    return Rule(COLLECTION, privilege, name_field)


RULES: dict[str, Rule] = {
    # databases
    "CreateDatabase": _g("CreateDatabase"),
    "DropDatabase": _g("DropDatabase"),
    "AlterDatabase": _g("AlterDatabase"),
    "DescribeDatabase": _g("DescribeDatabase"),
    # collections
    "CreateCollection": _g("CreateCollection"),
    "DropCollection": _g("DropCollection"),
    "DescribeCollection": _g("DescribeCollection"),
    "RenameCollection": _g("RenameCollection"),
    "AlterCollection": _g("CreateCollection"),
    "AlterCollectionField": _g("CreateCollection"),
    "AlterCollectionSchema": _c("AlterCollectionSchema"),
    "AddCollectionField": _c("AddCollectionField"),
    "GetCollectionStatistics": _c("GetStatistics"),
    "LoadCollection": _c("Load"),
    "ReleaseCollection": _c("Release"),
    "GetLoadingProgress": _c("GetLoadState"),
    "GetLoadState": _c("GetLoadState"),
    # partitions
    "CreatePartition": _c("CreatePartition"),
    "DropPartition": _c("DropPartition"),
    "HasPartition": _c("HasPartition"),
    "ShowPartitions": _c("ShowPartitions"),
    "GetPartitionStatistics": _c("GetStatistics"),
    "LoadPartitions": _c("Load"),
    "ReleasePartitions": _c("Release"),
    # indexes
    "CreateIndex": _c("CreateIndex"),
    "DescribeIndex": _c("IndexDetail"),
    "DropIndex": _c("DropIndex"),
    "AlterIndex": _c("CreateIndex"),
    # data
    "Insert": _c("Insert"),
    "Upsert": _c("Upsert"),
    "Delete": _c("Delete"),
    "Flush": _c("Flush", "collection_names"),
    "GetFlushState": _c("GetFlushState"),
    "Search": _c("Search"),
    "HybridSearch": _c("Search"),
    "Query": _c("Query"),
    "ManualCompaction": _c("Compaction"),
    # snapshots
    "CreateSnapshot": _c("CreateSnapshot"),
    "DropSnapshot": _c("DropSnapshot"),
    "ListSnapshots": _c("ListSnapshots"),
    "DescribeSnapshot": _c("DescribeSnapshot"),
    "RestoreSnapshot": _c("RestoreSnapshot"),
    "ListRestoreSnapshotJobs": _c("RestoreSnapshot"),
    # aliases
    "CreateAlias": _g("CreateAlias"),
    "AlterAlias": _g("CreateAlias"),
    "DropAlias": _g("DropAlias"),
    "DescribeAlias": _g("DescribeAlias"),
    "ListAliases": _g("ListAliases"),
    # resource groups
    "CreateResourceGroup": _g("CreateResourceGroup"),
    "DropResourceGroup": _g("DropResourceGroup"),
    "UpdateResourceGroups": _g("UpdateResourceGroups"),
    "TransferNode": _g("TransferNode"),
    "TransferReplica": _g("TransferReplica"),
    "ListResourceGroups": _g("ListResourceGroups"),
    "DescribeResourceGroup": _g("DescribeResourceGroup"),
    # users, roles, grants
    "CreateCredential": _g("CreateOwnership"),
    "UpdateCredential": Rule(USER, "UpdateUser", "username"),
    "DeleteCredential": _g("DropOwnership"),
    "ListCredUsers": _g("SelectOwnership"),
    "SelectUser": Rule(USER, "SelectUser", "user.name"),
    "CreateRole": _g("CreateOwnership"),
    "AlterRole": _g("CreateOwnership"),
    "DropRole": _g("DropOwnership"),
    "OperateUserRole": _g("ManageOwnership"),
    "SelectRole": _g("SelectOwnership"),
    "OperatePrivilege": _g("ManageOwnership"),
    "OperatePrivilegeV2": _g("ManageOwnership"),
    "SelectGrant": _g("SelectOwnership"),
    "CreatePrivilegeGroup": _g("CreatePrivilegeGroup"),
    "DropPrivilegeGroup": _g("DropPrivilegeGroup"),
    "ListPrivilegeGroups": _g("ListPrivilegeGroups"),
    "OperatePrivilegeGroup": _g("OperatePrivilegeGroup"),
}

OPEN = frozenset(
    {
        "Connect", "GetVersion", "CheckHealth", "AllocTimestamp", "HasCollection", "ShowCollections",
        "ListDatabases", "GetReplicas", "GetCompactionState", "GetCompactionStateWithPlans",
        "RunAnalyzer", "GetRestoreSnapshotState",
    }
)  # fmt: skip
