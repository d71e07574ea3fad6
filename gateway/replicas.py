"""Replica and resource-group RPCs, answered truthfully for walvus's one resource group.

A walvus gateway runs its searcher in process: one query node (node id 1) in Milvus's default
resource group, holding one replica of every loaded collection, with every shard on that node.
Creating, changing or dropping resource groups and moving nodes or replicas between them are
refused with a clear error: there is nothing to move them to.
"""

from __future__ import annotations

import socket
from typing import Any

from pymilvus.grpc_gen import common_pb2, milvus_pb2, rg_pb2

from gateway.errors import OK, NotSupported
from schemas.catalog import CollectionInfo
from schemas.exceptions import CollectionNotFound, WalvusError
from walvus.catalog import CatalogView

DEFAULT_RESOURCE_GROUP = "__default_resource_group"
NODE_ID = 1
REPLICA_NOT_FOUND = 400  # Milvus's ErrReplicaNotFound


class ReplicaNotFound(WalvusError, LookupError):
    code = REPLICA_NOT_FOUND

    def __init__(self, collection: str) -> None:
        super().__init__(
            f"replica not found[collection={collection}]: the collection is not loaded, call load_collection() first",
            collection=collection,
        )


class ResourceGroupNotFound(WalvusError, LookupError):
    code = 300  # Milvus's ErrResourceGroupNotFound

    def __init__(self, name: str) -> None:
        super().__init__(
            f"resource group not found[rg={name}]: walvus has one resource group, {DEFAULT_RESOURCE_GROUP}",
            resource_group=name,
        )


def check_replicas(req: Any) -> None:
    """A load's ``replica_number`` and ``resource_groups``: one replica in the default group."""
    if getattr(req, "replica_number", 0) > 1:
        raise NotSupported(
            f"replica_number={req.replica_number} is not supported by walvus: a deployment serves one "
            "replica of each loaded collection (scale reads out with more searchers instead)"
        )
    for group in getattr(req, "resource_groups", ()):
        if group != DEFAULT_RESOURCE_GROUP:
            raise ResourceGroupNotFound(group)


class ReplicaRpcs:
    def __init__(self, walvus: Any, address: str = "") -> None:
        self.w = walvus
        self.address = address
        self.hostname = socket.gethostname()

    @property
    def catalog(self) -> CatalogView:
        return self.w.catalog

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
        return milvus_pb2.GetReplicasResponse(status=OK, replicas=[self._replica(info, req.with_shard_nodes)])

    def _replica(self, info: CollectionInfo, with_nodes: bool) -> milvus_pb2.ReplicaInfo:
        loaded = info.loaded_partitions or tuple(info.partitions)
        return milvus_pb2.ReplicaInfo(
            replicaID=info.collection_id,  # one replica per collection: its id is free to reuse
            collectionID=info.collection_id,
            partition_ids=[info.collection_id + info.partitions[p] for p in loaded if p in info.partitions],
            shard_replicas=[
                milvus_pb2.ShardReplica(
                    leaderID=NODE_ID,
                    leader_addr=self.address,
                    dm_channel_name=f"{info.name}_v{shard}",  # as DescribeCollection's channel names
                    node_ids=[NODE_ID] if with_nodes else [],
                )
                for shard in range(info.shards_num)
            ],
            node_ids=[NODE_ID],
            resource_group_name=DEFAULT_RESOURCE_GROUP,
        )

    # resource groups ---------------------------------------------------------------------------
    def list_resource_groups(
        self, req: milvus_pb2.ListResourceGroupsRequest
    ) -> milvus_pb2.ListResourceGroupsResponse:
        return milvus_pb2.ListResourceGroupsResponse(status=OK, resource_groups=[DEFAULT_RESOURCE_GROUP])

    def describe_resource_group(
        self, req: milvus_pb2.DescribeResourceGroupRequest
    ) -> milvus_pb2.DescribeResourceGroupResponse:
        if req.resource_group != DEFAULT_RESOURCE_GROUP:
            raise ResourceGroupNotFound(req.resource_group)
        one = rg_pb2.ResourceGroupLimit(node_num=1)
        group = milvus_pb2.ResourceGroup(
            name=DEFAULT_RESOURCE_GROUP,
            capacity=1,
            num_available_node=1,
            num_loaded_replica={c.qualified: 1 for c in self.catalog.collections() if c.loaded},
            config=rg_pb2.ResourceGroupConfig(requests=one, limits=one),
            nodes=[common_pb2.NodeInfo(node_id=NODE_ID, address=self.address, hostname=self.hostname)],
        )
        return milvus_pb2.DescribeResourceGroupResponse(status=OK, resource_group=group)

    def refuse(self, what: str) -> Any:
        def handler(req: Any) -> Any:
            raise NotSupported(
                f"{what} is not supported by walvus: a deployment has one resource group, "
                f"{DEFAULT_RESOURCE_GROUP}, with one replica of each loaded collection"
            )

        return handler
