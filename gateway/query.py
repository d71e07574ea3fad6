"""The Query RPC: filters, gets by primary key, ``count(*)``, GROUP BY with aggregations, limit/offset,
and the pages of pymilvus's query iterator (which must come in primary-key order).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pymilvus.grpc_gen import milvus_pb2

from gateway.aggregation import grouping_plan
from gateway.errors import OK, NotSupported, ok_with_cost
from gateway.field_data import empty_column, field_data_from_column
from gateway.ordering import columns as order_columns
from gateway.ordering import order_indices, parse_order
from gateway.params import (
    COUNT,
    QUERY_KEYS,
    OutputPlan,
    as_bool,
    as_int,
    check_known,
    consistency,
    iterator_consistency,
    kv_dict,
    output_plan,
    partitions,
    readable_partitions,
    template_values,
)
from gateway.pk_filter import PkFilters
from gateway.zones import request_zone
from schemas.exceptions import InvalidArgument, LimitExceeded
from schemas.timestamptz import parse_time_fields
from walvus.searcher import QueryRequest, Searcher
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)
ITERATOR_READ_AHEAD = 100  # a query-iterator page reads this many batches ahead...
ITERATOR_MAX_PAGE = 1000  # ...up to this many rows (never fewer than the batch size)


class QueryRpcs:
    def __init__(self, walvus: WriteApi, searcher: Searcher, filters: PkFilters) -> None:
        self.w = walvus
        self.searcher = searcher
        self.filters = filters

    def query(self, req: milvus_pb2.QueryRequest) -> milvus_pb2.QueryResults:
        info = self.w.catalog.require(req.collection_name)
        kv = kv_dict(req.query_params)
        check_known(kv, QUERY_KEYS, "query params")
        pk = info.schema.primary.name
        group_by = [g.strip() for g in kv.get("group_by_fields", "").split(",") if g.strip()]
        grouping = grouping_plan(info.schema, list(req.output_fields), group_by)
        if grouping is not None:
            plan = OutputPlan(columns=grouping.keys, names=grouping.names)
            count = False
        else:
            plan = output_plan(info.schema, req.output_fields, allow_count=True)
            count = COUNT in plan.columns
            if not count:
                plan = output_plan(info.schema, req.output_fields, include=[pk])
        iterator = as_bool(kv.get("iterator"))
        if grouping is not None and iterator:
            raise NotSupported(
                "a query iterator cannot group or aggregate (group_by_fields, count(field)...)"
            )
        order = parse_order(info.schema, kv.get("order_by_fields", ""))
        if order and (count or grouping is not None or iterator):
            raise NotSupported(
                "order_by cannot be combined with count(*), group_by_fields, aggregations or a query iterator"
            )
        limit = as_int(kv, "limit", -1)
        # an offset without a limit skips that many matches (Milvus ignores it there; walvus ignores
        # no parameter it is given)
        offset = as_int(kv, "offset", 0)
        if offset < 0:
            raise InvalidArgument(
                f"invalid max query result window, offset [{offset}] is invalid, should be gte than 0"
            )
        if limit < 0 and limit != -1:
            raise InvalidArgument(
                f"invalid max query result window, limit [{limit}] is invalid, should be gte than 0"
            )
        if limit >= 0 and not iterator and limit + offset > self.w.limits.max_topk:
            raise LimitExceeded(
                f"invalid max query result window, (offset+limit) should be in range [1, "
                f"{self.w.limits.max_topk}], but got {offset + limit}"
            )
        expr = req.expr or ""
        if not expr.strip() and limit < 0 and not count and grouping is None:
            raise InvalidArgument("empty expression should be used with limit: invalid parameter")
        params = template_values(req.expr_template_values)
        parts = readable_partitions(info, partitions(info, req.partition_names))
        if iterator and limit > 0 and as_bool(kv.get("reduce_stop_for_best"), True):
            # like Milvus with reduce_stop_for_best, an iterator page may hold more than `limit`
            # rows: pymilvus keeps the extra ones and serves the next pages from them
            limit = max(limit, min(limit * ITERATOR_READ_AHEAD, ITERATOR_MAX_PAGE))
        q = QueryRequest(
            info.name,
            collection_id=info.collection_id,
            filter=expr,
            filter_params=params,
            output_fields=plan.columns,
            limit=None if limit < 0 else limit,
            offset=offset,
            partitions=parts,
            ignore_growing=as_bool(kv.get("ignore_growing")),
            group_by_fields=group_by,
            aggregates=grouping.aggregates if grouping is not None else [],
            consistency=iterator_consistency(
                consistency(
                    info, req.consistency_level, req.guarantee_timestamp, req.use_default_consistency
                ),
                iterator,
                req.guarantee_timestamp,
            ),
        )
        if iterator and not q.consistency.snapshot:
            # the first page pins the snapshot every later page reads (its session_ts)
            q = replace(q, consistency=replace(q.consistency, guarantee_ts=self.w.clock.now(), snapshot=True))
        keys = None if count or grouping is not None else self.filters.pk_values(info, expr, params)
        if keys is not None:
            q = replace(q, filter="", filter_params={}, ids=keys)
        if order:
            # every matching row, ordered, then the page (gateway/ordering.py)
            extra = [c for c in order_columns(order) if c not in q.output_fields]
            rows = self.searcher.query(
                replace(q, output_fields=q.output_fields + extra, limit=None, offset=0)
            )
            if rows.num_rows:
                rows = rows.take(pc.sort_indices(rows.column(pk)))
                idx = order_indices(rows, order)[offset : None if limit < 0 else offset + limit]
                rows = rows.take(pa.array(idx, type=pa.int64()))
            table = rows
        else:
            table = self._page(q, pk) if iterator else self.searcher.query(q)
        resp = milvus_pb2.QueryResults(
            status=OK, collection_name=info.name, output_fields=plan.names, primary_field_name=pk
        )
        has_zone = info.schema.has_timestamptz or kv.get("timezone")
        zone = request_zone(self.w, info, kv.get("timezone")) if has_zone else "UTC"
        parts = parse_time_fields(kv["time_fields"]) if "time_fields" in kv else ()
        for name in plan.columns if grouping is None else grouping.names:
            field = info.schema.field(name) if grouping is None else grouping.sources[name]
            column = table.column(name) if name in table.column_names else _empty(name, field, table.num_rows)
            resp.fields_data.append(field_data_from_column(name, column, field, zone, parts))
        if iterator:
            resp.session_ts = q.consistency.guarantee_ts
        resp.status.CopyFrom(ok_with_cost(resp.ByteSize()))
        return resp

    def _page(self, q: QueryRequest, pk: str) -> pa.Table:
        """One query-iterator page: the ``limit`` smallest matching keys (after ``offset``), in key order.

        Relies on the searcher contract that a limited query returns the rows with the smallest keys.
        """
        rows = self.searcher.query(q)
        return rows.take(pc.sort_indices(rows.column(pk))) if rows.num_rows else rows


def _empty(name: str, field: Any, rows: int) -> pa.Array:
    if rows:
        raise KeyError(f"the searcher returned no column {name!r}")
    return empty_column(field)
