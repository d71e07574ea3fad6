"""The ``walvus searcher`` RPC server: Arrow Flight in front of a ``SearcherService``.

Why Flight: answers are Arrow tables already (rows, vectors, JSON), and Flight sends them as Arrow
IPC over gRPC without re-encoding; a request is one ticket (``searcher.wire``). Gateways send
searches and queries on open ``do_exchange`` streams (``searcher.channel``); ``do_get`` answers
one read on a stream of its own; ``do_action`` answers the small calls (what is held, stats, BM25 statistics,
compaction states). A collection or shard not held here is not an error: the answer says which
shards it covers, and the gateway asks another searcher for the rest.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from schemas.exceptions import CollectionNotFound, CollectionNotLoaded, WalvusError
from searcher.channel import answer_message, error_message
from searcher.wire import decode_request, encode_error, encode_hits, encode_table
from walvus.searcher import SearchRequest

log = logging.getLogger(__name__)


class SearcherFlight(flight.FlightServerBase):
    def __init__(self, service: Any, location: str) -> None:
        super().__init__(location)
        self.svc = service

    def _answer(self, ticket: bytes) -> pa.Table:
        req = decode_request(ticket)
        if isinstance(req, SearchRequest):
            try:
                hits, served, metric = self.svc.served_search(req)
            except CollectionNotLoaded:
                hits, served, metric = [], frozenset(), ""
            return encode_hits(hits, served, metric)
        try:
            rows, served = self.svc.served_query(req)
        except CollectionNotLoaded:
            rows, served = pa.table({}), frozenset()
        return encode_table(rows, served)

    def do_exchange(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.MetadataRecordBatchWriter,
    ) -> None:
        """A gateway's open stream of reads (``searcher.channel``): one answer per request, in order,
        until the gateway closes it. A failed read is answered with its error; the stream goes on."""
        while True:
            try:
                ticket = reader.read_chunk().app_metadata
            except StopIteration:
                return
            try:
                if ticket is None:
                    raise WalvusError("a read on the searcher's stream carries its request as app metadata")
                message = answer_message(self._answer(ticket.to_pybytes()))
            except Exception as exc:
                _log_unexpected(exc)
                message = error_message(exc)
            writer.write_metadata(message)

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        """One read on a stream of its own (any Flight client can ask this way)."""
        try:
            return flight.RecordBatchStream(self._answer(ticket.ticket))
        except Exception as exc:
            raise _flight_error(exc) from None

    def do_action(self, context: Any, action: flight.Action) -> Any:
        try:
            body = action.body.to_pybytes()
            result = self._action(action.type, body)
        except Exception as exc:
            raise _flight_error(exc) from None
        return [json.dumps(result).encode()]

    def _action(self, kind: str, body: bytes) -> Any:
        if kind == "held":
            return {
                str(cid): [sorted(shards), progress] for cid, (shards, progress) in self.svc.held().items()
            }
        if kind == "bm25":
            req = decode_request(body)
            try:
                return self.svc.bm25_counts(req)
            except CollectionNotLoaded:
                return []
        args = json.loads(body or b"{}")
        if kind == "stats":
            info = self.svc.catalog.by_id(int(args["collection_id"]))
            if info is None:
                raise CollectionNotFound(str(args["collection_id"]))
            return self.svc.stats_of(info)
        if kind == "compaction":
            status = self.svc.compaction(int(args["compaction_id"]))
            return None if status is None else status.__dict__
        if kind == "compaction_requested":
            self.svc.compaction_requested(args["collection"], int(args["compaction_id"]))
            return None
        raise WalvusError(f"unknown searcher action {kind!r}")


def _log_unexpected(exc: Exception) -> None:
    if not isinstance(exc, WalvusError | TimeoutError):
        log.error("searcher request failed", exc_info=exc)


def _flight_error(exc: Exception) -> flight.FlightError:
    _log_unexpected(exc)
    return flight.FlightServerError(encode_error(exc))


def serve(service: Any, host: str, port: int) -> SearcherFlight:
    """Start serving (Flight runs its own threads); ``.port`` is the port it bound."""
    server = SearcherFlight(service, f"grpc://{host}:{port}")
    return server


__all__ = ["SearcherFlight", "serve"]
