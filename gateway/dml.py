"""Write RPCs: Insert, Upsert, Delete (by keys or by expression) and Flush.

Rows are validated and written to the WAL by the ``Walvus`` API; a rejected batch writes
nothing. After every write the searcher is told where it landed (``note_write``), so a
read that follows sees it.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from gateway.ddl import check_loaded_partition, update_timestamp
from gateway.errors import OK, SchemaOutdated, ok_with_cost
from gateway.field_data import columns_from_field_data
from gateway.metrics import ROWS_WRITTEN
from gateway.params import check_request_size, partitions, readable_partitions, template_values
from gateway.partial_update import PartialUpdater
from gateway.pk_filter import PkFilters
from gateway.zones import request_zone
from schemas.catalog import CollectionInfo
from schemas.exceptions import InvalidArgument
from schemas.types import DataType
from walvus.searcher import Consistency, ConsistencyLevel, QueryRequest, Searcher
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)


def ids_message(info: CollectionInfo, keys: list[Any]) -> schema_pb2.IDs:
    ids = schema_pb2.IDs()
    if info.schema.primary.dtype == DataType.VARCHAR:
        ids.str_id.data.extend(keys)
    else:
        ids.int_id.data.extend(keys)
    return ids


class WriteRpcs:
    def __init__(self, walvus: WriteApi, searcher: Searcher, filters: PkFilters) -> None:
        self.w = walvus
        self.searcher = searcher
        self.filters = filters
        self.partial = PartialUpdater(searcher)

    def _note(self, result: Any) -> None:
        """Tell the searcher where a write landed. The write is durable already, so a failure here
        is logged rather than returned: a client retrying an acknowledged insert would duplicate it."""
        try:
            self.searcher.note_write(result.collection_id, result.positions, result.ts)
        except Exception:
            log.exception("note_write failed collection_id=%s ts=%s", result.collection_id, result.ts)

    def insert(self, req: milvus_pb2.InsertRequest) -> milvus_pb2.MutationResult:
        return self._write(req, upsert=False)

    def upsert(self, req: milvus_pb2.UpsertRequest) -> milvus_pb2.MutationResult:
        return self._write(req, upsert=True, partial=bool(req.partial_update or len(req.field_ops)))

    def _write(self, req: Any, *, upsert: bool, partial: bool = False) -> milvus_pb2.MutationResult:
        check_request_size(self.w.limits, req)
        info = self.w.catalog.require(req.collection_name)
        # != rather than <: after alter_alias the client's cached schema may be another collection's
        if req.schema_timestamp and req.schema_timestamp != update_timestamp(info):
            raise SchemaOutdated(
                f"collection {info.name} schema changed: the client's cached schema is outdated"
            )
        zone = request_zone(self.w, info) if info.schema.has_timestamptz else "UTC"
        columns = columns_from_field_data(info.schema, req.fields_data, int(req.num_rows), zone)
        partition = req.partition_name or None
        if partial:
            # read, merge and write under the collection's lock: see gateway/partial_update.py
            with self.partial.lock(info):
                columns = self.partial.merge(info, columns, int(req.num_rows), req.field_ops)
                result = self.w.upsert(info.name, columns, partition)
                self._note(result)
        else:
            write = self.w.upsert if upsert else self.w.insert
            result = write(info.name, columns, partition)
            self._note(result)
        n = len(result.ids)
        ROWS_WRITTEN.labels("upsert" if upsert else "insert").inc(n)
        out = milvus_pb2.MutationResult(
            status=ok_with_cost(result.nbytes),
            IDs=ids_message(info, result.ids),
            succ_index=range(n),
            timestamp=result.ts,
        )
        if upsert:
            out.upsert_cnt = n
        else:
            out.insert_cnt = n
        return out

    def delete(self, req: milvus_pb2.DeleteRequest) -> milvus_pb2.MutationResult:
        info = self.w.catalog.require(req.collection_name)
        if not req.expr.strip():
            raise InvalidArgument("delete expression cannot be empty: give ids or a filter")
        partition = req.partition_name or None
        parts = partitions(info, [partition] if partition else [])
        params = template_values(req.expr_template_values)
        keys: list[Any] | pa.Array | None = self.filters.pk_values(info, req.expr, params)
        # a general expression, or keys scoped to a partition (Milvus deletes a key only where it
        # lives in that partition): find the matching keys first, as Milvus does
        if keys is None or (parts is not None and keys and check_loaded_partition(info, parts[0])):
            pk = info.schema.primary.name
            table = self.searcher.query(
                QueryRequest(
                    info.name,
                    collection_id=info.collection_id,
                    filter=req.expr if keys is None else "",
                    filter_params=params if keys is None else {},
                    ids=None if keys is None else list(keys),
                    output_fields=[pk],
                    partitions=readable_partitions(info, parts),
                    consistency=Consistency(ConsistencyLevel.STRONG, 0),
                )
            )
            keys = table.column(pk).combine_chunks() if table.num_rows else []
        result = self.w.delete(info.name, keys, partition)
        self._note(result)
        ROWS_WRITTEN.labels("delete").inc(len(result.ids))
        return milvus_pb2.MutationResult(
            status=ok_with_cost(result.nbytes), delete_cnt=len(result.ids), timestamp=result.ts
        )

    def flush(self, req: milvus_pb2.FlushRequest) -> milvus_pb2.FlushResponse:
        names = list(dict.fromkeys(req.collection_names))
        for name in names:
            self.w.catalog.require(name)
        self.w.flush(names)
        ts = self.w.clock.now()
        resp = milvus_pb2.FlushResponse(status=OK, db_name="default")
        for name in names:
            resp.coll_segIDs[name].data.extend([])
            resp.flush_coll_segIDs[name].data.extend([])
            resp.coll_flush_ts[name] = ts
        return resp

    def flush_state(self, req: milvus_pb2.GetFlushStateRequest) -> milvus_pb2.GetFlushStateResponse:
        # Flush answers only once everything is committed, so any flush a client waits on is done.
        return milvus_pb2.GetFlushStateResponse(status=OK, flushed=True)
