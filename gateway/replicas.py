"""Replica and resource-group RPCs, answered truthfully for walvus's searchers.

A walvus gateway runs its searcher in process: one query node (node id 1), holding one replica of
every loaded collection with every shard. Resource groups are Milvus's declarative ones
(``walvus.resource_groups``): created, configured, dropped and described as Milvus does, with that
node placed by their configs; a replica can be loaded into a group and moved between groups.
A group with no node still serves its replicas (the one searcher holds everything), and
``describe_replica`` says which node that is.
"""

from __future__ import annotations

import socket
import zlib
from dataclasses import replace
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, rg_pb2

from gateway.errors import OK, NotSupported
from schemas.catalog import CollectionInfo
from schemas.exceptions import CollectionNotFound, WalvusError
from schemas.resource_groups import DEFAULT_RESOURCE_GROUP, ReplicaPlacement, ResourceGroupInfo
from walvus.catalog import CatalogView
from walvus.resource_groups import (
    NODE_IDS,
    ResourceGroupError,
    ResourceGroupNotFound,
    check_group_name,
    config_of,
    dropped,
)
from walvus.write_api import WriteApi

REPLICA_NOT_FOUND = 400  # Milvus's ErrReplicaNotFound

__all__ = ["DEFAULT_RESOURCE_GROUP", "ReplicaRpcs", "ResourceGroupNotFound", "load_group"]


class ReplicaNotFound(WalvusError, LookupError):
    code = REPLICA_NOT_FOUND

    def __init__(self, collection: str) -> None:
        super().__init__(
            f"replica not found[collection={collection}]: the collection is not loaded, call load_collection() first",
            collection=collection,
        )


def check_replicas(req: Any, searcher: Any) -> int:
    """A load's ``replica_number`` (0: keep what the collection has): with searchers of their
    own, one replica per replica group of running searchers; inside the gateway, one."""
    wanted = int(getattr(req, "replica_number", 0) or 0)
    groups = searcher.replica_groups() if hasattr(searcher, "replica_groups") else None
    if wanted <= 1:
        return wanted
    if groups is None:
        raise NotSupported(
            f"replica_number={wanted} needs walvus searcher processes (WALVUS_SEARCHERS=remote): the "
            "searcher inside the gateway serves one replica of each loaded collection"
        )
    if wanted > len(groups) or list(range(wanted)) != groups[:wanted]:
        raise ResourceGroupError(
            f"replica_number={wanted} needs searchers in replica groups 0..{wanted - 1} "
            f"(WALVUS_SEARCHER_REPLICA_GROUP); running groups: {groups or 'none'}"
        )
    return wanted


def load_group(catalog: CatalogView, info: CollectionInfo, req: Any) -> ReplicaPlacement | None:
    """A load's ``resource_groups``: one existing group. Returns the placement to record when it
    changes, else None."""
    groups = list(getattr(req, "resource_groups", ()))
    if len(groups) > 1:
        raise ResourceGroupError(f"one replica can be loaded into one resource group, not {len(groups)}")
    rgs = catalog.resource_groups
    current = rgs.placement(info.collection_id)
    if not groups:
        return (
            None if info.loaded or current == DEFAULT_RESOURCE_GROUP else ReplicaPlacement(info.collection_id)
        )
    target = rgs.require(groups[0]).name
    if target == current:
        return None
    if info.loaded:
        raise ResourceGroupError(
            f"collection {info.name} is loaded in resource group {current}: move its replica with "
            f"transfer_replica, or release it first",
            collection=info.name,
        )
    return ReplicaPlacement(info.collection_id, target)


def node_id(address: str) -> int:
    """A searcher's node id: a stable number from the address it serves on."""
    return zlib.crc32(address.encode()) & 0x7FFFFFFF


class ReplicaRpcs:
    def __init__(self, walvus: WriteApi, address: str = "", searcher: Any = None) -> None:
        self.w = walvus
        self.address = address
        self.searcher = searcher
        self.hostname = socket.gethostname()

    @property
    def catalog(self) -> CatalogView:
        return self.w.catalog

    def _publish(self, *records: Any) -> None:
        self.catalog.publish_records(list(records))

    # replicas ----------------------------------------------------------------------------------
    def get_replicas(self, req: milvus_pb2.GetReplicasRequest) -> milvus_pb2.GetReplicasResponse:
        if req.collectionID and not req.collection_name:
            info = self.catalog.by_id(req.collectionID)
            if info is None or not info.active:
                raise CollectionNotFound(str(req.collectionID))
        else:
            info = self.catalog.require(req.collection_name)
        if not info.loaded:
            raise ReplicaNotFound(info.name)
        if hasattr(self.searcher, "replicas_of"):  # walvus searcher processes: one per replica group
            replicas = [
                self._remote_replica(info, r, req.with_shard_nodes) for r in self.searcher.replicas_of(info)
            ]
        else:
            replicas = [self._replica(info, req.with_shard_nodes)]
        return milvus_pb2.GetReplicasResponse(status=OK, replicas=replicas)

    def _remote_replica(self, info: CollectionInfo, replica: Any, with_nodes: bool) -> milvus_pb2.ReplicaInfo:
        """Replica group ``replica.group``: its searchers, and which one leads each shard."""
        loaded = info.loaded_partitions or tuple(info.partitions)
        return milvus_pb2.ReplicaInfo(
            replicaID=info.collection_id + replica.group,
            collectionID=info.collection_id,
            partition_ids=[info.collection_id + info.partitions[p] for p in loaded if p in info.partitions],
            shard_replicas=[
                milvus_pb2.ShardReplica(
                    leaderID=node_id(leader) if leader else 0,
                    leader_addr=leader,
                    dm_channel_name=f"{info.name}_v{shard}",
                    node_ids=[node_id(leader)] if with_nodes and leader else [],
                )
                for shard, leader in sorted(replica.leaders.items())
            ],
            node_ids=[node_id(a) for a in replica.members],
            resource_group_name=self.catalog.resource_groups.placement(info.collection_id),
        )

    def _replica(self, info: CollectionInfo, with_nodes: bool) -> milvus_pb2.ReplicaInfo:
        loaded = info.loaded_partitions or tuple(info.partitions)
        node = NODE_IDS[0]
        return milvus_pb2.ReplicaInfo(
            replicaID=info.collection_id,  # one replica per collection: its id is free to reuse
            collectionID=info.collection_id,
            partition_ids=[info.collection_id + info.partitions[p] for p in loaded if p in info.partitions],
            shard_replicas=[
                milvus_pb2.ShardReplica(
                    leaderID=node,
                    leader_addr=self.address,
                    dm_channel_name=f"{info.name}_v{shard}",  # as DescribeCollection's channel names
                    node_ids=[node] if with_nodes else [],
                )
                for shard in range(info.shards_num)
            ],
            node_ids=[node],
            resource_group_name=self.catalog.resource_groups.placement(info.collection_id),
        )

    def transfer_replica(self, req: milvus_pb2.TransferReplicaRequest) -> common_pb2.Status:
        rgs = self.catalog.resource_groups
        source = rgs.require(req.source_resource_group).name
        target = rgs.require(req.target_resource_group).name
        info = self.catalog.require(req.collection_name)
        if not info.loaded:
            raise ReplicaNotFound(info.name)
        if req.num_replica < 1:
            raise ResourceGroupError(f"num_replica must be at least 1, not {req.num_replica}")
        here = 1 if rgs.placement(info.collection_id) == source else 0
        if req.num_replica > here:
            raise ResourceGroupError(
                f"resource group {source} holds {here} replica(s) of collection {info.name}, "
                f"fewer than the {req.num_replica} to transfer",
                collection=info.name,
            )
        if source != target:
            self._publish(ReplicaPlacement(info.collection_id, target))
        return OK

    # resource groups ---------------------------------------------------------------------------
    def list_resource_groups(
        self, req: milvus_pb2.ListResourceGroupsRequest
    ) -> milvus_pb2.ListResourceGroupsResponse:
        names = [g.name for g in self.catalog.resource_groups.groups()]
        return milvus_pb2.ListResourceGroupsResponse(status=OK, resource_groups=names)

    def describe_resource_group(
        self, req: milvus_pb2.DescribeResourceGroupRequest
    ) -> milvus_pb2.DescribeResourceGroupResponse:
        rgs = self.catalog.resource_groups
        group = rgs.require(req.resource_group)
        nodes = rgs.nodes()[group.name]
        replicas = {
            c.name: 1
            for c in self.catalog.collections()
            if c.loaded and rgs.placement(c.collection_id) == group.name
        }
        answer = milvus_pb2.ResourceGroup(
            name=group.name,
            capacity=group.requests,
            num_available_node=len(nodes),
            num_loaded_replica=replicas,
            config=_config(group),
            nodes=[
                common_pb2.NodeInfo(node_id=n, address=self.address, hostname=self.hostname) for n in nodes
            ],
        )
        return milvus_pb2.DescribeResourceGroupResponse(status=OK, resource_group=answer)

    def create_resource_group(self, req: milvus_pb2.CreateResourceGroupRequest) -> common_pb2.Status:
        check_group_name(req.resource_group)
        existing = self.catalog.resource_groups.group(req.resource_group)
        group = ResourceGroupInfo(req.resource_group, created_ts=self.w.clock.now())
        if req.HasField("config"):
            group = self._checked(config_of(group, req.config))
        if existing is not None:
            if replace(existing, created_ts=0) == replace(group, created_ts=0):
                return OK  # Milvus: creating the same group with the same config again is a no-op
            raise ResourceGroupError(
                f"resource group already exists with another config[rg={req.resource_group}]"
            )
        self._publish(group)
        return OK

    def update_resource_groups(self, req: milvus_pb2.UpdateResourceGroupsRequest) -> common_pb2.Status:
        rgs = self.catalog.resource_groups
        changed = [
            self._checked(config_of(rgs.require(name), cfg)) for name, cfg in req.resource_groups.items()
        ]
        self._publish(*changed)  # one batch: every config of the call applies together
        return OK

    def drop_resource_group(self, req: milvus_pb2.DropResourceGroupRequest) -> common_pb2.Status:
        rgs = self.catalog.resource_groups
        group = rgs.group(req.resource_group)
        if group is None:
            return OK  # Milvus: dropping a missing group succeeds
        if group.name == DEFAULT_RESOURCE_GROUP:
            raise ResourceGroupError("the default resource group cannot be dropped")
        if group.requests or group.limits:
            raise ResourceGroupError(
                f"resource group {group.name} still requests or allows nodes: set its requests and limits "
                "node_num to 0 with update_resource_groups first"
            )
        loaded = [
            c.name
            for c in self.catalog.collections()
            if c.loaded and rgs.placement(c.collection_id) == group.name
        ]
        if loaded:
            raise ResourceGroupError(
                f"resource group {group.name} holds replicas of {', '.join(sorted(loaded))}: "
                "transfer or release them first"
            )
        self._publish(dropped(group))
        return OK

    def transfer_node(self, req: milvus_pb2.TransferNodeRequest) -> common_pb2.Status:
        """The legacy call, as Milvus now runs it: ``num_node`` moves from the source's config to
        the target's (requests and limits)."""
        rgs = self.catalog.resource_groups
        source, target = rgs.require(req.source_resource_group), rgs.require(req.target_resource_group)
        if req.num_node < 1:
            raise ResourceGroupError(f"num_node must be at least 1, not {req.num_node}")
        have = len(rgs.nodes()[source.name])
        if have < req.num_node:
            raise ResourceGroupError(
                f"resource group {source.name} has {have} node(s), fewer than the {req.num_node} to transfer"
            )
        n = req.num_node
        new_source = replace(source, requests=max(0, source.requests - n), limits=max(0, source.limits - n))
        if source.name == DEFAULT_RESOURCE_GROUP:
            new_source = replace(new_source, limits=source.limits)  # the default group keeps spare nodes
        new_target = replace(
            target, requests=target.requests + n, limits=max(target.limits, target.requests + n)
        )
        self._publish(new_source, new_target)
        return OK

    def _checked(self, group: ResourceGroupInfo) -> ResourceGroupInfo:
        rgs = self.catalog.resource_groups
        for name in (*group.transfer_from, *group.transfer_to):
            if name != group.name and rgs.group(name) is None:
                raise ResourceGroupNotFound(name)
        return group


def _config(group: ResourceGroupInfo) -> rg_pb2.ResourceGroupConfig:
    return rg_pb2.ResourceGroupConfig(
        requests=rg_pb2.ResourceGroupLimit(node_num=group.requests),
        limits=rg_pb2.ResourceGroupLimit(node_num=group.limits),
        transfer_from=[rg_pb2.ResourceGroupTransfer(resource_group=n) for n in group.transfer_from],
        transfer_to=[rg_pb2.ResourceGroupTransfer(resource_group=n) for n in group.transfer_to],
    )
