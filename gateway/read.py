"""Search RPCs: Search (top-k, range, grouping, search iterator v2) and HybridSearch.

A Milvus SearchRequest becomes a ``walvus.searcher.SearchRequest``; the searcher's ``Hits``
(best first, L2 as distances) become ``SearchResultData``: ids, scores and ``topks``
concatenated over the queries, output fields as column-wise FieldData.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from gateway.errors import NotSupported, ok_with_cost
from gateway.field_data import empty_column, extend_floats, field_data_from_column
from gateway.function_chain import FunctionChain
from gateway.function_rerank import FunctionRanker, FusionRanker, parse_function_score
from gateway.ordering import columns as order_columns
from gateway.ordering import ordered_hits, parse_order
from gateway.params import (
    RANK_KEYS,
    SEARCH_PARAM_KEYS,
    OutputPlan,
    as_bool,
    as_int,
    check_known,
    check_request_size,
    column_vectors,
    consistency,
    ids_list,
    iterator_consistency,
    json_params,
    kv_dict,
    output_plan,
    partitions,
    query_vectors,
    readable_partitions,
    template_values,
    vector_field,
)
from gateway.pk_filter import PkFilters
from gateway.ranker import Ranker
from gateway.search_iterator import SearchPages
from gateway.sparse_query import sparse_queries
from gateway.zones import request_zone
from schemas.catalog import CollectionInfo
from schemas.collection import FieldSchema
from schemas.exceptions import InvalidArgument, LimitExceeded
from schemas.sparse import SparseQueries
from schemas.timestamptz import parse_time_fields
from schemas.types import DataType
from walvus.searcher import Consistency, Hits, QueryRequest, Searcher, SearchRequest
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)
_SCORES = schema_pb2.SearchResultData.DESCRIPTOR.fields_by_name["scores"].number
_NOT_SEARCH_PARAMS = (
    "metric_type",
    "analyzer_name",
    "offset",
    "topk",
    "round_decimal",
    "ignore_growing",
    "anns_field",
    "limit",
)


class SearchRpcs:
    def __init__(self, walvus: WriteApi, searcher: Searcher, filters: PkFilters | None = None) -> None:
        self.w = walvus
        self.searcher = searcher
        self.filters = filters or PkFilters()
        self.pages = SearchPages(searcher)

    # plain search ---------------------------------------------------------------------------
    def search(self, req: milvus_pb2.SearchRequest) -> milvus_pb2.SearchResults:
        check_request_size(self.w.limits, req)
        info = self.w.catalog.require(req.collection_name)
        if len(req.sub_reqs):
            raise NotSupported("search with sub-requests is not supported")
        rerank = _function_ranker(info, req, 1)
        if req.HasField("search_aggregation"):
            raise NotSupported("search aggregation is not supported yet")
        if req.HasField("highlighter"):
            raise NotSupported("highlighting search results is not supported yet")
        kv = kv_dict(req.search_params)
        group_by_fields = [g.strip() for g in kv.pop("group_by_fields", "").split(",") if g.strip()]
        if len(group_by_fields) > 1:
            raise NotSupported(
                "grouping search by several fields is not supported yet: group by one field "
                f"(got {', '.join(group_by_fields)})"
            )
        if group_by_fields:
            kv.setdefault("group_by_field", group_by_fields[0])
        plan = output_plan(info.schema, req.output_fields)
        if info.schema.has_timestamptz or kv.get("timezone"):
            plan.zone = request_zone(self.w, info, kv.get("timezone"))
        if "time_fields" in kv:
            plan.time_fields = parse_time_fields(kv["time_fields"])
        group_by = kv.get("group_by_field") or None
        if group_by:
            plan.add(group_by)
        order = parse_order(info.schema, kv.pop("order_by_fields", ""))
        if order and (as_bool(kv.get("iterator")) or as_bool(kv.get("search_iter_v2"))):
            raise NotSupported("order_by_fields with a search iterator is not supported")
        cons = consistency(info, req.consistency_level, req.guarantee_timestamp, req.use_default_consistency)
        cons = iterator_consistency(cons, as_bool(kv.get("iterator")), req.guarantee_timestamp)
        parts = readable_partitions(info, partitions(info, req.partition_names))
        if rerank is not None:
            if group_by or as_bool(kv.get("search_iter_v2")) or as_bool(kv.get("iterator")):
                raise NotSupported(
                    "a rerank function cannot be used with grouping search or search iterators"
                )
            if order:
                raise NotSupported("a rerank function cannot be used with order_by_fields")
            return self._reranked_search(info, req, kv, plan, parts, cons, rerank)
        fetch = plan.columns + [c for c in order_columns(order) if c not in plan.columns]
        s = self._request(info, req, kv, fetch, parts, cons)
        if as_bool(kv.get("search_iter_v2")):
            return self._iterate(info, s, kv, plan)
        if order:
            # the offset + limit nearest rows, then ordered by the keys (gateway/ordering.py)
            hits = self.searcher.search(replace(s, limit=s.limit + s.offset, offset=0))
            hits = [ordered_hits(h, order, s.offset, s.limit) for h in hits]
        else:
            hits = self.searcher.search(s)
        results = self._results(info, hits, s.limit, plan)
        return milvus_pb2.SearchResults(
            status=ok_with_cost(results.ByteSize()), results=results, collection_name=info.name
        )

    def _reranked_search(
        self,
        info: CollectionInfo,
        req: milvus_pb2.SearchRequest,
        kv: dict[str, str],
        plan: OutputPlan,
        parts: list[str] | None,
        cons: Consistency,
        rerank: FunctionRanker | FunctionChain,
    ) -> milvus_pb2.SearchResults:
        """Search ``topk + offset`` candidates with their rerank inputs, rerank, then page."""
        columns = plan.columns + [f for f in rerank.input_fields if f not in plan.columns]
        s = self._request(info, req, kv, columns, parts, cons)
        limit, offset, rounding = s.limit, s.offset, s.round_decimal
        s = replace(s, limit=limit + offset, offset=0, round_decimal=-1)
        fused = []
        for h in self.searcher.search(s):
            ids = h.ids.tolist() if isinstance(h.ids, np.ndarray) else list(h.ids)
            out, scores, origin = rerank.fuse(
                [(ids, h.distances, h.fields)], [s.metric or "COSINE"], limit, offset
            )
            if rounding >= 0:
                scores = np.round(scores, rounding)
            fused.append(Hits(out, scores, _take_rows([h.fields], origin, plan)))
        results = self._results(info, fused, limit, plan)
        return milvus_pb2.SearchResults(
            status=ok_with_cost(results.ByteSize()), results=results, collection_name=info.name
        )

    def _request(
        self,
        info: CollectionInfo,
        req: milvus_pb2.SearchRequest,
        kv: dict[str, str],
        columns: list[str],
        parts: list[str] | None,
        cons: Consistency,
    ) -> SearchRequest:
        limits = self.w.limits
        filter_params = template_values(req.expr_template_values)
        # the filter is checked first: a bad expression is reported as such, whatever else is wrong
        self.filters.compile(info, req.dsl, filter_params)
        check_known(kv, SEARCH_PARAM_KEYS, "search params")
        field = vector_field(info.schema, kv.get("anns_field"))
        topk = as_int(kv, "topk")
        offset = as_int(kv, "offset", 0)
        if topk < 1 or offset < 0 or topk + offset > limits.max_topk:
            raise LimitExceeded(
                f"topk [{topk}] + offset [{offset}] is invalid, it should be in range [1, {limits.max_topk}]"
            )
        params = json_params(kv.get("params"), "search params")
        check_known(params, SEARCH_PARAM_KEYS, "search params")
        metric = str(kv.get("metric_type") or params.get("metric_type") or "").upper() or None
        analyzer_name = kv.get("analyzer_name") or params.get("analyzer_name")
        for key in _NOT_SEARCH_PARAMS:
            params.pop(key, None)
        index = info.indexes.get(field.name)
        if metric and index is not None and index.metric_type and metric != index.metric_type.upper():
            raise InvalidArgument(
                f"metric type not match: invalid parameter[expected={index.metric_type}][actual={metric}]"
            )
        metric = metric or (index.metric_type.upper() if index is not None and index.metric_type else None)
        if req.placeholder_group and field.dtype.is_sparse:
            queries = sparse_queries(
                info.schema,
                field,
                req.placeholder_group,
                None if analyzer_name is None else str(analyzer_name),
            )
        elif analyzer_name is not None:
            raise InvalidArgument(
                f"analyzer_name applies to full-text search on a BM25 output field, not to field {field.name}"
            )
        elif req.placeholder_group:
            queries = query_vectors(field, req.placeholder_group)
        else:
            queries = self._vectors_of(info, field, ids_list(req.ids), parts, cons)
        if len(queries) > limits.max_topk:
            raise LimitExceeded(
                f"nq (number of search vectors) [{len(queries)}] is invalid, it should be in range "
                f"[1, {limits.max_topk}]"
            )
        group_by = kv.get("group_by_field") or None
        if group_by:
            gf = info.schema.field(group_by)
            if gf is None or gf.dtype.is_vector or gf.dtype in (DataType.JSON, DataType.ARRAY):
                raise InvalidArgument(f"group_by_field {group_by} must be a scalar field of the collection")
        return SearchRequest(
            collection=info.name,
            collection_id=info.collection_id,
            anns_field=field.name,
            queries=queries,
            limit=topk,
            metric=metric,
            params=params,
            filter=req.dsl,
            filter_params=filter_params,
            partitions=parts,
            output_fields=columns,
            offset=offset,
            round_decimal=as_int(kv, "round_decimal", -1),
            ignore_growing=as_bool(kv.get("ignore_growing")),
            group_by_field=group_by,
            group_size=as_int(kv, "group_size", 1),
            strict_group_size=as_bool(kv.get("strict_group_size")),
            consistency=cons,
        )

    def _vectors_of(
        self,
        info: CollectionInfo,
        field: FieldSchema,
        keys: list[Any],
        parts: list[str] | None,
        cons: Consistency,
    ) -> np.ndarray:
        """Search by primary keys: the stored vectors of those rows, in the order given."""
        if not keys:
            raise InvalidArgument("a search needs vectors (data) or primary keys (ids)")
        pk = info.schema.primary.name
        table = self.searcher.query(
            QueryRequest(
                info.name,
                ids=keys,
                output_fields=[pk, field.name],
                partitions=parts,
                consistency=cons,
                collection_id=info.collection_id,
            )
        )
        where = {k: i for i, k in enumerate(table.column(pk).to_pylist())}
        missing = [k for k in keys if k not in where]
        if missing:
            raise InvalidArgument(f"primary keys {missing[:10]} not found in collection {info.name}")
        rows = table.take(pa.array([where[k] for k in keys], type=pa.int64()))
        if field.dtype.is_sparse:
            return SparseQueries.from_column(rows.column(field.name).combine_chunks())
        return column_vectors(field, rows.column(field.name))

    def _results(
        self, info: CollectionInfo, hits: list[Hits], topk: int, plan: OutputPlan
    ) -> schema_pb2.SearchResultData:
        pk = info.schema.primary
        res = schema_pb2.SearchResultData(
            num_queries=len(hits), top_k=topk, primary_field_name=pk.name, output_fields=plan.names
        )
        keys: list[Any] = []
        for h in hits:
            keys.extend(h.ids.tolist() if isinstance(h.ids, np.ndarray) else h.ids)
        if pk.dtype == DataType.VARCHAR:
            res.ids.str_id.data.extend(keys)
        else:
            res.ids.int_id.data.extend(keys)
        res.topks.extend([len(h.ids) for h in hits])
        if keys:
            scores = np.concatenate([np.asarray(h.distances, dtype=np.float32) for h in hits])
            extend_floats(res, scores, _SCORES)
        if plan.columns:
            tables = [h.fields for h in hits if len(h.ids)]
            if len(tables) > 1:
                table = pa.concat_tables(tables, promote_options="permissive")
            else:
                table = tables[0] if tables else None
            for name in plan.columns:
                field = info.schema.field(name)
                column = table.column(name) if table is not None else empty_column(field)
                res.fields_data.append(
                    field_data_from_column(name, column, field, plan.zone, plan.time_fields)
                )
        return res

    # search iterator v2 -----------------------------------------------------------------------
    def _iterate(
        self, info: CollectionInfo, s: SearchRequest, kv: dict[str, str], plan: OutputPlan
    ) -> milvus_pb2.SearchResults:
        """One page of a search iterator (``gateway.search_iterator``)."""
        page, batch, token, last = self.pages.page(info, s, kv)
        results = self._results(info, [page], batch, plan)
        results.search_iterator_v2_results.token = token
        results.search_iterator_v2_results.last_bound = last
        ts = s.consistency.guarantee_ts if s.consistency.guarantee_ts > 2 else self.w.clock.now()
        return milvus_pb2.SearchResults(
            status=ok_with_cost(results.ByteSize()), results=results, collection_name=info.name, session_ts=ts
        )

    # hybrid search --------------------------------------------------------------------------
    def hybrid_search(self, req: milvus_pb2.HybridSearchRequest) -> milvus_pb2.SearchResults:
        check_request_size(self.w.limits, req)
        info = self.w.catalog.require(req.collection_name)
        if len(req.function_chains):
            raise NotSupported("function chains in hybrid search are not supported")
        if not req.requests:
            raise InvalidArgument("hybrid search needs at least one search request")
        function = _function_ranker(info, req, len(req.requests))
        rank = kv_dict(req.rank_params)
        limit = as_int(rank, "limit")
        offset = as_int(rank, "offset", 0)
        if limit < 1 or offset < 0 or limit + offset > self.w.limits.max_topk:
            raise LimitExceeded(
                f"topk [{limit}] + offset [{offset}] is invalid, it should be in range [1, {self.w.limits.max_topk}]"
            )
        if rank.get("group_by_field"):
            raise NotSupported("grouping hybrid search is not supported")
        check_known(rank, RANK_KEYS, "hybrid search rank params")
        ranker: FunctionRanker | FunctionChain = function or FusionRanker(
            Ranker.parse(
                rank.get("strategy", "rrf"), json_params(rank.get("params"), "rank params"), len(req.requests)
            )
        )
        if function is not None and (rank.get("strategy") or rank.get("params")):
            raise NotSupported(
                "hybrid search takes one ranker: a rerank function or a classic ranker, not both"
            )
        plan = output_plan(info.schema, req.output_fields)
        if info.schema.has_timestamptz:
            plan.zone = request_zone(self.w, info)
        cons = consistency(info, req.consistency_level, req.guarantee_timestamp, req.use_default_consistency)
        parts = readable_partitions(info, partitions(info, req.partition_names))
        columns = plan.columns + [f for f in ranker.input_fields if f not in plan.columns]
        subs = [
            self._request(info, sub, kv_dict(sub.search_params), columns, parts, cons) for sub in req.requests
        ]
        nq = len(subs[0].queries)
        if any(len(s.queries) != nq for s in subs):
            raise InvalidArgument(
                "all the search requests of a hybrid search must have the same number of vectors"
            )
        results = [self.searcher.search(s) for s in subs]
        metrics = [s.metric or "COSINE" for s in subs]
        round_decimal = as_int(rank, "round_decimal", -1)
        fused = []
        for q in range(nq):
            per = [
                (
                    r[q].ids.tolist() if isinstance(r[q].ids, np.ndarray) else r[q].ids,
                    r[q].distances,
                    r[q].fields,
                )
                for r in results
            ]
            ids, scores, origin = ranker.fuse(per, metrics, limit, offset)
            if round_decimal >= 0:
                scores = np.round(scores, round_decimal)
            fused.append(Hits(ids, scores, _take_rows([r[q].fields for r in results], origin, plan)))
        results = self._results(info, fused, limit, plan)
        return milvus_pb2.SearchResults(
            status=ok_with_cost(results.ByteSize()), results=results, collection_name=info.name
        )


def _function_ranker(
    info: CollectionInfo, req: milvus_pb2.SearchRequest | milvus_pb2.HybridSearchRequest, n_requests: int
) -> FunctionRanker | FunctionChain | None:
    """The request's rerank function (``function_score``) or function chain, if it has one."""
    chains = list(getattr(req, "function_chains", []))
    if req.function_score.functions and chains:
        raise InvalidArgument("function_chains and a ranker cannot be used together")
    if chains:
        if n_requests > 1:
            raise NotSupported("function chains are not supported in hybrid search")
        return FunctionChain.parse(chains, info.schema)
    if req.function_score.functions:
        return parse_function_score(req.function_score, info.schema, n_requests)
    return None


def _take_rows(tables: list[pa.Table], origin: list[tuple[int, int]], plan: OutputPlan) -> pa.Table:
    if not plan.columns or not origin:
        return pa.table({})
    starts = np.cumsum([0] + [t.num_rows for t in tables])
    combined = pa.concat_tables(
        [t.select(plan.columns) for t in tables if t.num_rows], promote_options="permissive"
    )
    return combined.take(pa.array([int(starts[i]) + pos for i, pos in origin], type=pa.int64()))
