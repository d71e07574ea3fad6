"""Resource-group records on the catalog topic: the groups and where each collection's replica is.

- ``rg:<name>``: a resource group and its declarative config (``ResourceGroupInfo``), Milvus's
  ``requests`` / ``limits`` node numbers and preferred ``transfer_from`` / ``transfer_to`` groups;
- ``rgreplica:<collection id>``: the group that holds the collection's replica (``ReplicaPlacement``).

Resource groups describe a site's own searchers, so CDC never replicates them. A dropped group
keeps a record with ``state = "dropped"``, as aliases do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from schemas.rbac import ACTIVE, JsonRecord

DEFAULT_RESOURCE_GROUP = "__default_resource_group"
DEFAULT_CAPACITY = 1_000_000  # Milvus's limit for the default group: every spare node goes there
RG_KEY_PREFIXES = ("rg:", "rgreplica:")


def is_resource_group_key(key: str) -> bool:
    return key.startswith(RG_KEY_PREFIXES)


@dataclass(frozen=True)
class ResourceGroupInfo(JsonRecord):
    name: str
    requests: int = 0
    limits: int = 0
    transfer_from: tuple[str, ...] = field(default_factory=tuple)
    transfer_to: tuple[str, ...] = field(default_factory=tuple)
    created_ts: int = 0
    state: str = ACTIVE

    kind: ClassVar[str] = "rg"

    @property
    def key(self) -> str:
        return f"rg:{self.name}"


DEFAULT_GROUP = ResourceGroupInfo(DEFAULT_RESOURCE_GROUP, 0, DEFAULT_CAPACITY)


@dataclass(frozen=True)
class ReplicaPlacement(JsonRecord):
    collection_id: int
    resource_group: str = DEFAULT_RESOURCE_GROUP
    state: str = ACTIVE

    kind: ClassVar[str] = "rgreplica"

    @property
    def key(self) -> str:
        return f"rgreplica:{self.collection_id}"


ResourceGroupRecord = ResourceGroupInfo | ReplicaPlacement


def decode_resource_group(key: str, raw: bytes) -> ResourceGroupRecord:
    if key.startswith("rgreplica:"):
        return ReplicaPlacement.from_json(raw)  # type: ignore[no-any-return]
    if key.startswith("rg:"):
        return ResourceGroupInfo.from_json(raw)  # type: ignore[no-any-return]
    raise ValueError(f"not a resource-group key: {key}")
