"""Compaction RPCs: ManualCompaction, GetCompactionState and GetCompactionStateWithPlans.

``compact()`` puts a request on the segments topic for the compactor (in the indexer) and answers
at once with the compaction id; the state is Executing until the compactor announces the end
(``SegmentsCompacted``), then Completed, with one plan per rewritten (shard, partition): its
source segments and its target. An id this gateway process never saw is UndefiedState, as Milvus
answers for an unknown id. ``target_size`` (MB) bounds the segments written, estimated from the
collection's stored bytes per row. Clustering compactions and compacting chosen segments,
partitions or channels are refused: walvus compacts a whole collection by its own policy. An L0
compaction is what walvus's compaction does anyway (deletes are applied to the rows), so
``is_l0`` is accepted.
"""

from __future__ import annotations

from pymilvus.grpc_gen import common_pb2, milvus_pb2

from gateway.errors import OK, NotSupported
from schemas.exceptions import InvalidArgument
from walvus.searcher import Searcher
from walvus.write_api import WriteApi

EXECUTING = common_pb2.CompactionState.Executing
COMPLETED = common_pb2.CompactionState.Completed


class CompactionRpcs:
    def __init__(self, walvus: WriteApi, searcher: Searcher) -> None:
        self.walvus = walvus
        self.searcher = searcher

    def manual_compaction(
        self, req: milvus_pb2.ManualCompactionRequest
    ) -> milvus_pb2.ManualCompactionResponse:
        if req.majorCompaction:
            raise NotSupported("walvus does not offer clustering compaction (is_clustering=True)")
        if req.target_size < 0:
            raise InvalidArgument(f"target_size must be a positive number of MB, got {req.target_size}")
        if req.segment_ids or req.partition_id or req.channel:
            raise NotSupported(
                "walvus compacts a whole collection: segment_ids, partition_id and channel cannot be chosen"
            )
        name = req.collection_name or self._name_of(req.collectionID)
        info = self.walvus.catalog.require(name)
        compaction_id = self.walvus.request_compaction(info.name, req.target_size)
        self.searcher.compaction_requested(info.name, compaction_id)
        return milvus_pb2.ManualCompactionResponse(
            status=OK, compactionID=compaction_id, compactionPlanCount=1
        )

    def compaction_state(
        self, req: milvus_pb2.GetCompactionStateRequest
    ) -> milvus_pb2.GetCompactionStateResponse:
        status = self.searcher.compaction(req.compactionID)
        if status is None:
            return milvus_pb2.GetCompactionStateResponse(
                status=OK, state=common_pb2.CompactionState.UndefiedState
            )
        if not status.done:
            return milvus_pb2.GetCompactionStateResponse(status=OK, state=EXECUTING, executingPlanNo=1)
        plans = max(1, len(status.plans))
        return milvus_pb2.GetCompactionStateResponse(
            status=OK,
            state=COMPLETED,
            completedPlanNo=0 if status.error else len(status.plans),
            failedPlanNo=plans if status.error else 0,
        )

    def compaction_plans(
        self, req: milvus_pb2.GetCompactionPlansRequest
    ) -> milvus_pb2.GetCompactionPlansResponse:
        if not req.compactionID:
            raise NotSupported("walvus answers compaction plans by compaction id, not by collection")
        status = self.searcher.compaction(req.compactionID)
        if status is None:
            return milvus_pb2.GetCompactionPlansResponse(
                status=OK, state=common_pb2.CompactionState.UndefiedState
            )
        task_state = (
            common_pb2.CompactionTaskStateFailed
            if status.error
            else common_pb2.CompactionTaskStateCompleted
            if status.done
            else common_pb2.CompactionTaskStateExecuting
        )
        infos = [
            milvus_pb2.CompactionMergeInfo(
                sources=sources,
                target=target,
                targets=[target],
                plan_id=i,
                trigger_id=req.compactionID,
                type=common_pb2.CompactionTypeMix,
                state=task_state,
                failure_reason=status.error,
            )
            for i, (sources, target) in enumerate(status.plans or ([[[], 0]] if status.error else []))
        ]
        return milvus_pb2.GetCompactionPlansResponse(
            status=OK, state=COMPLETED if status.done else EXECUTING, mergeInfos=infos
        )

    def _name_of(self, collection_id: int) -> str:
        for info in self.walvus.catalog.collections():
            if info.collection_id == collection_id and info.active:
                return info.name
        return str(collection_id)  # the catalog then says which collection was not found
