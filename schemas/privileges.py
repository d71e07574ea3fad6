"""Milvus's privilege vocabulary: privilege names, object types, built-in privilege groups, levels.

Facts from Milvus's documentation (``common.security.rbac.*.privileges``) and its proto enums
(``common.ObjectPrivilege``), written out here so walvus checks the same names Milvus does:

- v1 grants (``grant_privilege``) name an object type; a privilege is valid on the types listed in
  ``OBJECT_PRIVILEGES`` (or is a custom privilege group);
- v2 grants (``grant_privilege_v2``) name a database and a collection; the privilege's *level*
  (cluster, database, collection) decides what it applies to;
- the nine built-in groups of v2 and the three of v1 (``ReadOnly``, ``ReadWrite``, ``Admin``) are
  ``BUILTIN_GROUPS``; ``All`` holds every privilege;
- ``RELATED``: granting Load also grants GetLoadState and GetLoadingProgress; Flush, GetFlushState.
"""

from __future__ import annotations

GLOBAL, COLLECTION, USER = "Global", "Collection", "User"
OBJECT_TYPES = (GLOBAL, COLLECTION, USER)
ANY = "*"
ALL = "All"

COLLECTION_READ_ONLY = (
    "Query", "Search", "IndexDetail", "GetFlushState", "GetLoadState", "GetLoadingProgress",
    "HasPartition", "ShowPartitions", "DescribeCollection", "DescribeAlias", "GetStatistics",
    "ListAliases",
)  # fmt: skip
COLLECTION_READ_WRITE = (*COLLECTION_READ_ONLY, "Load", "Release", "Insert", "Delete", "Upsert", "Import",
    "Flush", "Compaction", "LoadBalance", "CreateIndex", "DropIndex", "CreatePartition", "DropPartition",
)  # fmt: skip
COLLECTION_ADMIN = (*COLLECTION_READ_WRITE, "CreateAlias", "DropAlias")
DATABASE_READ_ONLY = ("ShowCollections", "DescribeDatabase")
DATABASE_READ_WRITE = (*DATABASE_READ_ONLY, "AlterDatabase")
DATABASE_ADMIN = (*DATABASE_READ_WRITE, "CreateCollection", "DropCollection")
CLUSTER_READ_ONLY = (
    "ListDatabases", "SelectOwnership", "SelectUser", "DescribeResourceGroup", "ListResourceGroups",
    "ListPrivilegeGroups",
)  # fmt: skip
CLUSTER_READ_WRITE = (*CLUSTER_READ_ONLY, "FlushAll", "TransferNode", "TransferReplica",
    "UpdateResourceGroups",
)  # fmt: skip
CLUSTER_ADMIN = (*CLUSTER_READ_WRITE, "BackupRBAC", "RestoreRBAC", "CreateDatabase", "DropDatabase",
    "CreateOwnership", "DropOwnership", "ManageOwnership", "CreateResourceGroup", "DropResourceGroup",
    "UpdateUser", "RenameCollection", "CreatePrivilegeGroup", "DropPrivilegeGroup", "OperatePrivilegeGroup",
)  # fmt: skip

# v1's groups (Milvus 2.4): ReadOnly and ReadWrite on collections, Admin on the instance
V1_READ_ONLY = (
    "Query", "Search", "IndexDetail", "GetFlushState", "GetLoadState", "GetLoadingProgress",
    "HasPartition", "ShowPartitions", "ShowCollections", "ListAliases", "ListDatabases",
    "DescribeCollection", "DescribeDatabase", "DescribeAlias", "GetStatistics",
)  # fmt: skip
V1_READ_WRITE = (*V1_READ_ONLY, "CreateIndex", "DropIndex", "CreatePartition", "DropPartition", "Load",
    "Release", "Insert", "Delete", "Upsert", "Import", "Flush", "Compaction", "LoadBalance",
    "RenameCollection", "CreateAlias", "DropAlias",
)  # fmt: skip
V1_ADMIN = (*V1_READ_WRITE, "CreateCollection", "DropCollection", "CreateOwnership", "DropOwnership",
    "SelectOwnership", "ManageOwnership", "SelectUser", "UpdateUser", "BackupRBAC", "RestoreRBAC",
    "CreateResourceGroup", "UpdateResourceGroups", "DropResourceGroup", "DescribeResourceGroup",
    "ListResourceGroups", "TransferReplica", "TransferNode", "CreateDatabase", "DropDatabase",
    "AlterDatabase",
)  # fmt: skip

BUILTIN_GROUPS: dict[str, tuple[str, ...]] = {
    "CollectionReadOnly": COLLECTION_READ_ONLY,
    "CollectionReadWrite": COLLECTION_READ_WRITE,
    "CollectionAdmin": COLLECTION_ADMIN,
    "DatabaseReadOnly": DATABASE_READ_ONLY,
    "DatabaseReadWrite": DATABASE_READ_WRITE,
    "DatabaseAdmin": DATABASE_ADMIN,
    "ClusterReadOnly": CLUSTER_READ_ONLY,
    "ClusterReadWrite": CLUSTER_READ_WRITE,
    "ClusterAdmin": CLUSTER_ADMIN,
    "ReadOnly": V1_READ_ONLY,
    "ReadWrite": V1_READ_WRITE,
    "Admin": V1_ADMIN,
}
V2_GROUPS = tuple(g for g in BUILTIN_GROUPS if g.startswith(("Collection", "Database", "Cluster")))

RELATED: dict[str, tuple[str, ...]] = {
    "Load": ("GetLoadState", "GetLoadingProgress"),
    "Flush": ("GetFlushState",),
}

# which privileges (and groups) a v1 grant may give on each object type
OBJECT_PRIVILEGES: dict[str, frozenset[str]] = {
    COLLECTION: frozenset(
        {
            "Load",
            "Release",
            "Compaction",
            "Insert",
            "Delete",
            "Upsert",
            "GetStatistics",
            "CreateIndex",
            "IndexDetail",
            "DropIndex",
            "Search",
            "Flush",
            "Query",
            "LoadBalance",
            "Import",
            "GetLoadingProgress",
            "GetLoadState",
            "CreatePartition",
            "DropPartition",
            "ShowPartitions",
            "HasPartition",
            "GetFlushState",
            "ReadOnly",
            "ReadWrite",
            "AddCollectionField",
            "AlterCollectionSchema",
            "CreateSnapshot",
            "DropSnapshot",
            "ListSnapshots",
            "DescribeSnapshot",
            "RestoreSnapshot",
        }
    ),  # fmt: skip
    GLOBAL: frozenset(
        {
            ALL,
            "CreateCollection",
            "DropCollection",
            "DescribeCollection",
            "ShowCollections",
            "RenameCollection",
            "CreateOwnership",
            "DropOwnership",
            "SelectOwnership",
            "ManageOwnership",
            "BackupRBAC",
            "RestoreRBAC",
            "CreateResourceGroup",
            "UpdateResourceGroups",
            "DropResourceGroup",
            "DescribeResourceGroup",
            "ListResourceGroups",
            "TransferReplica",
            "TransferNode",
            "FlushAll",
            "CreateDatabase",
            "DropDatabase",
            "ListDatabases",
            "AlterDatabase",
            "DescribeDatabase",
            "CreateAlias",
            "DropAlias",
            "DescribeAlias",
            "ListAliases",
            "Admin",
            "CreatePrivilegeGroup",
            "DropPrivilegeGroup",
            "ListPrivilegeGroups",
            "OperatePrivilegeGroup",
            *V2_GROUPS,
        }
    ),  # fmt: skip
    USER: frozenset({"UpdateUser", "SelectUser"}),
}
PRIVILEGES: frozenset[str] = frozenset().union(*OBJECT_PRIVILEGES.values(), *BUILTIN_GROUPS.values()) - set(
    BUILTIN_GROUPS
)

CLUSTER_LEVEL, DATABASE_LEVEL, COLLECTION_LEVEL = "Cluster", "Database", "Collection"


def level(privilege: str) -> str | None:
    """The v2 level of a privilege or built-in group: Cluster, Database, Collection, or None."""
    for lvl in (CLUSTER_LEVEL, DATABASE_LEVEL, COLLECTION_LEVEL):
        if privilege.startswith(lvl) and privilege in BUILTIN_GROUPS:
            return lvl
    if privilege in CLUSTER_ADMIN or privilege == ALL:
        return CLUSTER_LEVEL
    if privilege in DATABASE_ADMIN:
        return DATABASE_LEVEL
    if privilege in COLLECTION_ADMIN:
        return COLLECTION_LEVEL
    return None


def is_builtin(privilege: str) -> bool:
    """A privilege or built-in group name Milvus defines (custom groups are not)."""
    return privilege in PRIVILEGES or privilege in BUILTIN_GROUPS or privilege == ALL
