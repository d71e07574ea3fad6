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

from gateway.analyzer_rpc import AnalyzerRpcs
from gateway.ddl import CollectionRpcs
from gateway.dml import WriteRpcs
from gateway.errors import OK, DatabaseNotFound, NotSupported, status_for
from gateway.indexes import IndexProgress, IndexRpcs
from gateway.metrics import RpcMetrics
from gateway.pk_filter import PkFilters
from gateway.query import QueryRpcs
from gateway.read import SearchRpcs
from searcher.types import Searcher

log = logging.getLogger(__name__)
SERVICE = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]
VERSION = "v2.5.0-walvus"
DEFAULT_DB = "default"


def response_class(method_name: str) -> type:
    return message_factory.GetMessageClass(SERVICE.methods_by_name[method_name].output_type)


class MilvusServicer(milvus_pb2_grpc.MilvusServiceServicer):
    """Milvus's gRPC API over a ``Walvus`` (writes, catalog) and a ``Searcher`` (reads)."""

    def __init__(
        self, walvus: Any, searcher: Searcher, *, index_progress: IndexProgress | None = None
    ) -> None:
        self.walvus = walvus
        self.searcher = searcher
        filters = PkFilters()
        colls = CollectionRpcs(walvus, searcher)
        idx = IndexRpcs(walvus, searcher, index_progress)
        writes = WriteRpcs(walvus, searcher, filters)
        search = SearchRpcs(walvus, searcher)
        self._metrics = RpcMetrics()
        handlers: dict[str, Callable[[Any], Any]] = {
            "Connect": self._connect,
            "GetVersion": lambda r: milvus_pb2.GetVersionResponse(status=OK, version=VERSION),
            "CheckHealth": lambda r: milvus_pb2.CheckHealthResponse(status=OK, isHealthy=True),
            "AllocTimestamp": lambda r: milvus_pb2.AllocTimestampResponse(
                status=OK, timestamp=walvus.clock.now()
            ),
            "ListDatabases": lambda r: milvus_pb2.ListDatabasesResponse(
                status=OK, db_names=[DEFAULT_DB], db_ids=[1]
            ),
            "DescribeDatabase": self._describe_database,
            "CreateDatabase": self._no_databases,
            "DropDatabase": self._no_databases,
            "CreateCollection": colls.create_collection,
            "DescribeCollection": colls.describe_collection,
            "HasCollection": colls.has_collection,
            "ShowCollections": colls.show_collections,
            "DropCollection": colls.drop_collection,
            "RenameCollection": colls.rename_collection,
            "AlterCollection": colls.alter_collection,
            "AddCollectionField": colls.add_collection_field,
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
            "RunAnalyzer": AnalyzerRpcs(walvus).run_analyzer,
        }
        for method in SERVICE.methods:
            impl = handlers.get(method.name)
            setattr(self, method.name, self._wrap(method.name, impl) if impl else _unimplemented(method.name))

    def _wrap(self, name: str, impl: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        cls = response_class(name)
        status_only = cls is common_pb2.Status
        observe = self._metrics.observe

        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                response = impl(request)
                code = 0
            except Exception as exc:  # every failure becomes a Milvus status, in one place
                status = status_for(exc, method=name)
                log.debug("rpc failed method=%s code=%d reason=%s", name, status.code, status.reason)
                response = status if status_only else cls(status=status)
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

    def _describe_database(
        self, req: milvus_pb2.DescribeDatabaseRequest
    ) -> milvus_pb2.DescribeDatabaseResponse:
        if req.db_name not in ("", DEFAULT_DB):
            raise DatabaseNotFound(req.db_name)
        return milvus_pb2.DescribeDatabaseResponse(status=OK, db_name=DEFAULT_DB, dbID=1)

    def _no_databases(self, req: Any) -> common_pb2.Status:
        raise NotSupported(f"walvus has one database, {DEFAULT_DB!r}: databases cannot be created or dropped")


def _unimplemented(name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"walvus does not implement the Milvus RPC {name}")

    handler.__name__ = name
    return handler
