"""In-memory stand-ins for tests: the real ``Walvus`` API over a memory log, catalog and store,
a ``MemorySearcher`` that applies what the log holds and searches it with the searcher's exact
kernels (``brute_force_search``, ``brute_force_range_search``, ``group_positions``), and
``running_gateway`` which serves them on a free port for the real pymilvus client.

Nothing here needs Kafka or Delta Lake.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gateway.indexes import IndexProgress
from gateway.params import COUNT, column_vectors
from gateway.schema_convert import filter_schema
from gateway.server import serve
from indexer import brute_force_range_search, brute_force_search
from schemas.catalog import DEFAULT_PARTITION, CatalogRecord, CollectionInfo, record_key
from schemas.collection import PARTITION_COLUMN
from schemas.exceptions import CollectionNotLoaded
from schemas.filters import compile_filter
from schemas.segments import CompactionRequested, SegmentsCompacted, decode_announcement
from schemas.topics import segments_topic
from schemas.types import DataType
from schemas.wal import Op, WalRecord
from searcher.aggregation import aggregate
from searcher.compacted import CompactionStates
from searcher.requests import group_positions
from walvus.api import Walvus
from walvus.catalog import CatalogView
from walvus.log import LogMessage
from walvus.searcher import CompactionStatus, Hits, QueryRequest, SearchRequest
from walvus.settings import GatewaySettings, LimitSettings


class MemoryLog:
    """The ``KafkaLog`` interface in memory; listeners see every appended message at once."""

    def __init__(self) -> None:
        self.messages: list[LogMessage] = []
        self.topics: dict[str, int] = {}
        self._next: dict[tuple[str, int], int] = defaultdict(int)
        self._listeners: list[Callable[[LogMessage], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Callable[[LogMessage], None]) -> None:
        self._listeners.append(fn)

    def ensure_topic(self, name: str, partitions: int = 1, **_: Any) -> None:
        self.topics.setdefault(name, partitions)

    def append(self, messages: Sequence[LogMessage], timeout: float = 30.0) -> list[int]:
        with self._lock:
            offsets = []
            for m in messages:
                offsets.append(self._next[(m.topic, m.partition)])
                self._next[(m.topic, m.partition)] += 1
                self.messages.append(m)
            for m in messages:
                for fn in self._listeners:
                    fn(m)
        return offsets

    def end_offsets(self, topic: str, partitions: int) -> list[int]:
        return [self._next[(topic, p)] for p in range(partitions)]

    def records(self, op: Op | None = None) -> list[WalRecord]:
        """Decoded WAL records written so far (catalog messages skipped)."""
        out = []
        for m in self.messages:
            if m.value is None or m.key is not None:
                continue
            rec = WalRecord.decode(m.value)
            if op is None or rec.header.op == op:
                out.append(rec)
        return out

    def close(self) -> None:
        pass


class MemoryCatalog(CatalogView):
    """The ``Catalog`` interface in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[CatalogRecord] = []

    def publish(self, info: CollectionInfo, timeout: float = 30.0) -> CollectionInfo:
        self.publish_records([info])
        return info

    def publish_records(self, records: list[CatalogRecord], timeout: float = 30.0) -> None:
        for r in records:
            self.apply(record_key(r), r)
            self.events.append(r)

    def stop(self) -> None:
        pass


class MemoryStore:
    """Everything is committed at once, so ``Walvus.flush`` returns immediately."""

    def committed_offset(self, collection_id: int, kind: str, shard: int) -> int:
        return 2**62

    def read(self, collection_id: int, kind: str, **_: Any) -> None:
        return None  # nothing is sealed: persisted row counts are 0

    def dataset(self, collection_id: int, kind: str) -> None:
        return None  # no sealed segments: index progress is (0, 0, 0)


def memory_walvus(limits: LimitSettings | None = None) -> Walvus:
    return Walvus(
        MemoryLog(),
        MemoryCatalog(),
        MemoryStore(),
        namespace="test",
        site="test",  # type: ignore[arg-type]
        limits=limits,
    )


class MemorySearcher:
    """A brute-force ``Searcher`` over the memory log: one live row per key, exact distances.

    ``calls`` records every request; set ``fail`` to an exception to make reads raise it.
    """

    def __init__(self, walvus: Walvus) -> None:
        self.w = walvus
        self.calls: list[tuple[str, Any]] = []
        self.writes: list[tuple[int, dict[int, int], int]] = []
        self.loaded: set[int] = set()  # collection ids: a rename keeps a collection loaded
        self.progress = 100
        self.fail: Exception | None = None
        self._rows: dict[int, dict[Any, dict[str, Any]]] = defaultdict(dict)
        self.compactions = CompactionStates()
        walvus.kafka.subscribe(self._apply)  # type: ignore[attr-defined]

    def _apply(self, msg: LogMessage) -> None:
        if msg.key is not None or msg.value is None:
            return
        if msg.topic == segments_topic(self.w.ns):  # compaction requests and their ends
            ann = decode_announcement(msg.value)
            if isinstance(ann, CompactionRequested | SegmentsCompacted):
                self.compactions.note(ann)
            return
        rec = WalRecord.decode(msg.value)
        info = self.w.catalog.by_id(rec.header.collection_id)
        if info is None or rec.batch is None:
            return
        rows = self._rows[info.collection_id]
        pk = info.schema.primary.name
        if rec.header.op in (Op.INSERT, Op.UPSERT):
            for row in rec.batch.to_pylist():
                row.setdefault(PARTITION_COLUMN, rec.header.partition or DEFAULT_PARTITION)
                rows[row[pk]] = row
        elif rec.header.op == Op.DELETE:
            for key in rec.batch.column(0).to_pylist():
                row = rows.get(key)
                if row is not None and rec.header.partition in (None, row[PARTITION_COLUMN]):
                    del rows[key]

    # the Searcher protocol ------------------------------------------------------------------
    def load(self, collection: str, partitions: list[str] | None = None) -> None:
        self.calls.append(("load", (collection, partitions)))
        self.loaded.add(self.w.catalog.require(collection).collection_id)

    def release(self, collection: str, partitions: list[str] | None = None) -> None:
        self.calls.append(("release", (collection, partitions)))
        if partitions is None:
            self.loaded.discard(self.w.catalog.require(collection).collection_id)

    def loading_progress(self, collection: str) -> int:
        return self.progress

    def is_loaded(self, collection: str) -> bool:
        info = self.w.catalog.get(collection)
        return info is not None and info.collection_id in self.loaded

    def note_write(self, collection_id: int, positions: dict[int, int], ts: int) -> None:
        self.writes.append((collection_id, dict(positions), ts))

    def stats(self, collection: str) -> dict[str, Any]:
        info = self.w.catalog.require(collection)
        return {"row_count": len(self._rows[info.collection_id])}

    def compaction_requested(self, collection: str, compaction_id: int) -> None:
        self.compactions.note(CompactionRequested(-1, collection, compaction_id))

    def compaction(self, compaction_id: int) -> CompactionStatus | None:
        return self.compactions.get(compaction_id)

    def table(self, info: CollectionInfo, partitions: list[str] | None = None) -> pa.Table:
        rows = [
            r
            for r in self._rows[info.collection_id].values()
            if partitions is None or r[PARTITION_COLUMN] in partitions
        ]
        schema = info.schema.data_arrow_schema()
        return pa.table({f.name: pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema})

    def _filtered(
        self, info: CollectionInfo, flt: str, params: dict[str, Any], partitions: list[str] | None
    ) -> pa.Table:
        table = self.table(info, partitions)
        if flt and flt.strip():
            table = table.filter(
                pa.array(compile_filter(flt, filter_schema(info.schema), params).evaluate(table))
            )
        return table

    def _check(self, name: str, collection_id: int = 0) -> CollectionInfo:
        if self.fail is not None:
            raise self.fail
        info = self.w.catalog.by_id(collection_id) if collection_id else self.w.catalog.require(name)
        if info is None or info.collection_id not in self.loaded:
            raise CollectionNotLoaded(name)
        return info

    def search(self, req: SearchRequest) -> list[Hits]:
        self.calls.append(("search", req))
        info = self._check(req.collection, req.collection_id)
        table = self._filtered(info, req.filter, req.filter_params, req.partitions)
        field = info.schema.field(req.anns_field) if req.anns_field else info.schema.vector_fields[0]
        index = info.indexes.get(field.name)
        metric = (req.metric or (index.metric_type if index else "") or "COSINE").upper()
        pk = info.schema.primary.name
        vectors = column_vectors(field, table.column(field.name))
        out = []
        for dist, rows in _neighbours(vectors, np.asarray(req.queries), metric, req.params):
            if req.group_by_field:
                values = table.column(req.group_by_field).take(pa.array(rows)).to_pylist()
                pos, _ = group_positions(values, req.limit, req.offset, req.group_size, req.strict_group_size)
                sel = np.asarray(pos, dtype=np.int64)
            else:
                sel = np.arange(len(rows))[req.offset : req.offset + req.limit]
            take = pa.array(rows[sel], type=pa.int64())
            out.append(
                Hits(
                    table.column(pk).take(take).to_pylist(),
                    dist[sel].astype(np.float32),
                    table.select(req.output_fields).take(take),
                )
            )
        return out

    def query(self, req: QueryRequest) -> pa.Table:
        self.calls.append(("query", req))
        info = self._check(req.collection, req.collection_id)
        table = self._filtered(info, req.filter, req.filter_params, req.partitions)
        pk = info.schema.primary.name
        if req.ids is not None:
            table = table.filter(
                pc.is_in(table.column(pk), pa.array(req.ids, type=table.schema.field(pk).type))
            )
        if req.group_by_fields or req.aggregates:
            groups = aggregate(table, req.group_by_fields, req.aggregates)
            return groups.slice(req.offset, req.limit)
        if COUNT in req.output_fields:
            return pa.table({COUNT: pa.array([table.num_rows], type=pa.int64())})
        if req.limit is not None or req.offset:  # the contract: limited queries take the smallest keys
            table = table.sort_by(pk).slice(req.offset, req.limit)
        return table.select(req.output_fields)


def _neighbours(
    vectors: np.ndarray, queries: np.ndarray, metric: str, params: dict[str, Any]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every row (or every row in range) of each query, best first: (distances, row positions)."""
    if "radius" in params:
        rf = params.get("range_filter")
        radius, range_filter = float(params["radius"]), None if rf is None else float(rf)
        return brute_force_range_search(vectors, queries, metric, radius, range_filter)
    if len(vectors) == 0:
        return [(np.zeros(0, np.float32), np.zeros(0, np.int64)) for _ in range(len(queries))]
    d, labels = brute_force_search(vectors, queries, len(vectors), metric)
    return [(d[q][labels[q] >= 0], labels[q][labels[q] >= 0]) for q in range(len(queries))]


@dataclass
class RunningGateway:
    walvus: Walvus
    searcher: MemorySearcher
    server: Any
    uri: str

    @property
    def rest_uri(self) -> str:
        """The REST API's base URI (``running_gateway(rest=True)``)."""
        return self.server.rest.uri

    @property
    def log(self) -> MemoryLog:
        return self.walvus.kafka  # type: ignore[return-value]


@contextmanager
def running_gateway(
    *,
    users: str = "",
    limits: LimitSettings | None = None,
    index_progress: IndexProgress | None = None,
    rest: bool = False,
    **settings: Any,
) -> Iterator[RunningGateway]:
    """A gateway on a free local port over memory fakes (and its REST API on another, with
    ``rest``); stopped on exit."""
    walvus = memory_walvus(limits)
    searcher = MemorySearcher(walvus)
    conf = GatewaySettings(host="127.0.0.1", port=0, users=users, grpc_workers=8, **settings)
    server = serve(walvus, searcher, conf, index_progress=index_progress, rest_port=0 if rest else None)
    try:
        yield RunningGateway(walvus, searcher, server, server.uri)
    finally:
        server.stop(0)
        if server.rest is not None:
            server.rest.stop()


__all__ = [
    "DataType",
    "MemoryCatalog",
    "MemoryLog",
    "MemorySearcher",
    "MemoryStore",
    "RunningGateway",
    "memory_walvus",
    "running_gateway",
]
