"""Resource groups: Milvus's declarative groups of query nodes, over walvus's searchers.

``ResourceGroups`` is the state every catalog replays (``CatalogView.resource_groups``): the
groups, their configs and the group holding each collection's replica. ``assign`` places the
searcher nodes as Milvus's declarative API promises: a group below its ``requests`` takes nodes
from groups holding more than theirs (its ``transfer_from`` groups first, then the default group,
then any), a group above its ``limits`` gives nodes back (to its ``transfer_to`` groups below
their limits first, else to the default group), and spare nodes stay in the default group. Nodes
are placed afresh from the configs each time, in group creation order, so every process agrees
without storing the placement.

A walvus deployment's searcher runs inside each gateway process: one node (id 1) for the
placement. It serves every loaded collection whatever group its replica is in; the groups are
bookkeeping that answers Milvus's resource-group calls truthfully about that one node.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from schemas.exceptions import InvalidArgument, WalvusError
from schemas.rbac import DROPPED
from schemas.resource_groups import (
    DEFAULT_CAPACITY,
    DEFAULT_GROUP,
    DEFAULT_RESOURCE_GROUP,
    ReplicaPlacement,
    ResourceGroupInfo,
    ResourceGroupRecord,
)

NODE_IDS = (1,)  # the in-process searcher
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


class ResourceGroupNotFound(WalvusError, LookupError):
    code = 300  # Milvus's ErrResourceGroupNotFound

    def __init__(self, name: str) -> None:
        super().__init__(f"resource group not found[rg={name}]", resource_group=name)


class ResourceGroupError(InvalidArgument):
    """A resource-group call Milvus refuses (code 1100, invalid parameter)."""


def check_group_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise ResourceGroupError(
            f"resource group name {name!r} is invalid: 1 to 255 characters, starting with a letter or "
            "an underscore, and only letters, digits and underscores",
            resource_group=name,
        )


class ResourceGroups:
    """The resource-group records applied so far, by key."""

    def __init__(self) -> None:
        self._groups: dict[str, ResourceGroupInfo] = {}
        self._placements: dict[int, ReplicaPlacement] = {}

    def apply(self, key: str, record: ResourceGroupRecord | None) -> None:
        if key.startswith("rgreplica:"):
            cid = int(key.split(":", 1)[1])
            if isinstance(record, ReplicaPlacement) and record.active:
                self._placements[cid] = record
            else:
                self._placements.pop(cid, None)
        elif isinstance(record, ResourceGroupInfo) and record.active:
            self._groups[record.name] = record
        else:
            self._groups.pop(key.split(":", 1)[1], None)

    # reading ---------------------------------------------------------------------------------
    def group(self, name: str) -> ResourceGroupInfo | None:
        found = self._groups.get(name)
        if found is None and name == DEFAULT_RESOURCE_GROUP:
            return DEFAULT_GROUP
        return found

    def require(self, name: str) -> ResourceGroupInfo:
        found = self.group(name)
        if found is None:
            raise ResourceGroupNotFound(name)
        return found

    def groups(self) -> list[ResourceGroupInfo]:
        """Every group, the default one first, then by creation."""
        others = sorted(
            (g for g in list(self._groups.values()) if g.name != DEFAULT_RESOURCE_GROUP),
            key=lambda g: (g.created_ts, g.name),
        )
        return [self.require(DEFAULT_RESOURCE_GROUP), *others]

    def placement(self, collection_id: int) -> str:
        found = self._placements.get(collection_id)
        return found.resource_group if found is not None else DEFAULT_RESOURCE_GROUP

    def nodes(self, nodes: tuple[int, ...] = NODE_IDS) -> dict[str, list[int]]:
        return assign(list(nodes), self.groups())


def assign(nodes: list[int], groups: list[ResourceGroupInfo]) -> dict[str, list[int]]:
    """Node ids by group, the placement Milvus's declarative config converges to."""
    by_name = {g.name: g for g in groups}
    held: dict[str, list[int]] = {g.name: [] for g in groups}
    held[DEFAULT_RESOURCE_GROUP] = sorted(nodes)

    def donor(g: ResourceGroupInfo) -> str | None:
        order = [*g.transfer_from, DEFAULT_RESOURCE_GROUP, *by_name]
        for name in order:
            other = by_name.get(name)
            if other is not None and name != g.name and len(held[name]) > other.requests:
                return name
        return None

    def receiver(g: ResourceGroupInfo) -> str:
        for name in g.transfer_to:
            other = by_name.get(name)
            if other is not None and name != g.name and len(held[name]) < other.limits:
                return name
        return DEFAULT_RESOURCE_GROUP

    for g in groups:  # requests first, in creation order
        while len(held[g.name]) < g.requests and (src := donor(g)) is not None:
            held[g.name].append(held[src].pop())
    for g in groups:  # then limits
        if g.name == DEFAULT_RESOURCE_GROUP:
            continue
        while len(held[g.name]) > g.limits:
            held[receiver(g)].append(held[g.name].pop())
    return {name: sorted(ids) for name, ids in held.items()}


def config_of(group: ResourceGroupInfo, config: Any) -> ResourceGroupInfo:
    """``group`` with the fields a pymilvus ``ResourceGroupConfig`` message sets."""
    requests = config.requests.node_num if config.HasField("requests") else group.requests
    limits = config.limits.node_num if config.HasField("limits") else group.limits
    if config.HasField("node_filter") and list(config.node_filter.node_labels):
        raise ResourceGroupError("node_filter is not supported by walvus: its searchers carry no labels")
    if requests < 0 or limits < 0:
        raise ResourceGroupError("requests and limits node_num must not be negative")
    if requests > limits:
        raise ResourceGroupError(
            f"resource group {group.name}: requests node_num {requests} exceeds limits node_num {limits}"
        )
    if limits > DEFAULT_CAPACITY:
        raise ResourceGroupError(f"limits node_num must be at most {DEFAULT_CAPACITY}")
    return replace(
        group,
        requests=requests,
        limits=limits,
        transfer_from=tuple(t.resource_group for t in config.transfer_from) or group.transfer_from,
        transfer_to=tuple(t.resource_group for t in config.transfer_to) or group.transfer_to,
    )


def dropped(group: ResourceGroupInfo) -> ResourceGroupInfo:
    return replace(group, state=DROPPED)
