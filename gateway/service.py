"""The ``milvus.proto.milvus.MilvusService`` servicer: a thin table from RPC names to handlers.

Every handler takes the request and returns the response; this module adds error
translation (``gateway.errors``) and per-RPC metrics. RPCs walvus does not implement
answer gRPC ``UNIMPLEMENTED`` with the method's name, which pymilvus reports as is
(and tolerates where Milvus made an RPC optional, such as AllocTimestamp).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from gateway.aliases import AliasRpcs
from gateway.alter import alter_collection_field, alter_index
from gateway.analyzer_rpc import AnalyzerRpcs
from gateway.auth import as_caller, header_user
from gateway.authz import Guard
from gateway.compaction import CompactionRpcs
from gateway.databases import DATABASE_RPCS, DatabaseRpcs, request_database, require_database
from gateway.ddl import CollectionRpcs
from gateway.dml import WriteRpcs
from gateway.errors import OK, status_for
from gateway.indexes import IndexProgress, IndexRpcs
from gateway.metrics import RpcMetrics
from gateway.pk_filter import PkFilters
from gateway.query import QueryRpcs
from gateway.rbac import RbacRpcs
from gateway.read import SearchRpcs
from gateway.replicas import ReplicaRpcs
from gateway.snapshots import SnapshotRpcs
from walvus.databases import using_db
from walvus.rbac_ddl import RbacDdl
from walvus.searcher import Searcher
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)
SERVICE = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]
VERSION = "v2.5.0-walvus"


def response_class(method_name: str) -> type:
    return message_factory.GetMessageClass(SERVICE.methods_by_name[method_name].output_type)


class MilvusServicer(milvus_pb2_grpc.MilvusServiceServicer):
    """Milvus's gRPC API over a ``Walvus`` (writes, catalog) and a ``Searcher`` (reads)."""

    def __init__(
        self,
        walvus: WriteApi,
        searcher: Searcher,
        *,
        index_progress: IndexProgress | None = None,
        address: str = "",
        rbac: RbacDdl | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.walvus = walvus
        self.searcher = searcher
        self._guard = guard
        rbac = rbac or RbacDdl(walvus, "Milvus")
        filters = PkFilters()
        colls = CollectionRpcs(walvus, searcher)
        idx = IndexRpcs(walvus, searcher, index_progress)
        writes = WriteRpcs(walvus, searcher, filters)
        search = SearchRpcs(walvus, searcher, filters)
        snaps = SnapshotRpcs(walvus)
        compaction = CompactionRpcs(walvus, searcher)
        aliases = AliasRpcs(walvus)
        dbs = DatabaseRpcs(walvus)
        replicas = ReplicaRpcs(walvus, address, searcher)
        self._metrics = RpcMetrics()
        handlers: dict[str, Callable[[Any], Any]] = {
            "Connect": self._connect,
            "GetVersion": lambda r: milvus_pb2.GetVersionResponse(status=OK, version=VERSION),
            "CheckHealth": lambda r: milvus_pb2.CheckHealthResponse(status=OK, isHealthy=True),
            "AllocTimestamp": lambda r: milvus_pb2.AllocTimestampResponse(
                status=OK, timestamp=walvus.clock.now()
            ),
            "ListDatabases": dbs.list_databases,
            "DescribeDatabase": dbs.describe_database,
            "CreateDatabase": dbs.create_database,
            "DropDatabase": dbs.drop_database,
            "AlterDatabase": dbs.alter_database,
            "CreateCollection": colls.create_collection,
            "DescribeCollection": colls.describe_collection,
            "HasCollection": colls.has_collection,
            "ShowCollections": colls.show_collections,
            "DropCollection": colls.drop_collection,
            "RenameCollection": colls.rename_collection,
            "AlterCollection": colls.alter_collection,
            "AddCollectionField": colls.add_collection_field,
            "AlterCollectionField": lambda req: alter_collection_field(walvus, req),
            "AlterIndex": lambda req: alter_index(walvus, req),
            "AlterCollectionSchema": colls.alter_collection_schema,
            "GetCollectionStatistics": colls.collection_statistics,
            "CreatePartition": colls.create_partition,
            "DropPartition": colls.drop_partition,
            "HasPartition": colls.has_partition,
            "ShowPartitions": colls.show_partitions,
            "GetPartitionStatistics": colls.partition_statistics,
            "CreateIndex": idx.create_index,
            "DescribeIndex": idx.describe_index,
            "DropIndex": idx.drop_index,
            "LoadCollection": idx.load_collection,
            "ReleaseCollection": idx.release_collection,
            "LoadPartitions": idx.load_partitions,
            "ReleasePartitions": idx.release_partitions,
            "GetLoadingProgress": idx.loading_progress,
            "GetLoadState": idx.load_state,
            "Insert": writes.insert,
            "Upsert": writes.upsert,
            "Delete": writes.delete,
            "Flush": writes.flush,
            "GetFlushState": writes.flush_state,
            "Search": search.search,
            "HybridSearch": search.hybrid_search,
            "Query": QueryRpcs(walvus, searcher, filters).query,
            "CreateSnapshot": snaps.create_snapshot,
            "DropSnapshot": snaps.drop_snapshot,
            "ListSnapshots": snaps.list_snapshots,
            "DescribeSnapshot": snaps.describe_snapshot,
            "RestoreSnapshot": snaps.restore_snapshot,
            "GetRestoreSnapshotState": snaps.restore_state,
            "ListRestoreSnapshotJobs": snaps.list_restore_jobs,
            "ManualCompaction": compaction.manual_compaction,
            "GetCompactionState": compaction.compaction_state,
            "GetCompactionStateWithPlans": compaction.compaction_plans,
            "CreateAlias": aliases.create_alias,
            "AlterAlias": aliases.alter_alias,
            "DropAlias": aliases.drop_alias,
            "DescribeAlias": aliases.describe_alias,
            "ListAliases": aliases.list_aliases,
            "GetReplicas": replicas.get_replicas,
            "ListResourceGroups": replicas.list_resource_groups,
            "DescribeResourceGroup": replicas.describe_resource_group,
            "CreateResourceGroup": replicas.create_resource_group,
            "DropResourceGroup": replicas.drop_resource_group,
            "UpdateResourceGroups": replicas.update_resource_groups,
            "TransferNode": replicas.transfer_node,
            "TransferReplica": replicas.transfer_replica,
            "RunAnalyzer": AnalyzerRpcs(walvus).run_analyzer,
            **RbacRpcs(rbac, enforced=guard is not None).handlers(),
        }
        self.implemented = frozenset(handlers)
        for method in SERVICE.methods:
            impl = handlers.get(method.name)
            setattr(self, method.name, self._wrap(method.name, impl) if impl else _unimplemented(method.name))

    def _wrap(self, name: str, impl: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        cls = response_class(name)
        status_only = cls is common_pb2.Status
        observe = self._metrics.observe
        guard = self._guard

        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                user = header_user(context.invocation_metadata())
                with using_db(request_database(name, request, context)) as db, as_caller(user):
                    if guard is not None:  # before anything is read or written
                        guard.check(name, request, user, db)
                    if name not in DATABASE_RPCS:
                        require_database(self.walvus, db)
                    response = impl(request)
                    if guard is not None:
                        response = guard.filter(name, response, user, db)
                code = 0
            except Exception as exc:  # every failure becomes a Milvus status, in one place
                status = status_for(exc, method=name)
                log.debug("rpc failed method=%s code=%d reason=%s", name, status.code, status.reason)
                if status_only:
                    response = status
                elif "status" in cls.DESCRIPTOR.fields_by_name:
                    response = cls(status=status)
                else:  # AlterCollectionSchemaResponse names its status alter_status
                    response = cls(alter_status=status)
                code = status.code
            observe(name, code, time.perf_counter() - start)
            return response

        handler.__name__ = name
        return handler

    # small RPCs ---------------------------------------------------------------------------------
    def _connect(self, req: milvus_pb2.ConnectRequest) -> milvus_pb2.ConnectResponse:
        info = req.client_info
        log.info(
            "client connected sdk=%s %s host=%s user=%s",
            info.sdk_type,
            info.sdk_version,
            info.host,
            info.user,
        )
        return milvus_pb2.ConnectResponse(
            status=OK,
            server_info=common_pb2.ServerInfo(
                build_tags=VERSION, deploy_mode="walvus", reserved={"walvus": "1"}
            ),
            identifier=random.getrandbits(62),
        )


def _unimplemented(name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"walvus does not implement the Milvus RPC {name}")

    handler.__name__ = name
    return handler
