"""The searcher's interface, as the gateway sees it: requests, results, consistency.

The gateway depends on this, never on the searcher's insides; ``searcher.service`` implements it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

import numpy as np
import pyarrow as pa


class ConsistencyLevel(IntEnum):
    """Milvus's numbering (common.proto)."""

    STRONG = 0
    SESSION = 1
    BOUNDED = 2
    EVENTUALLY = 3
    CUSTOMIZED = 4


@dataclass(frozen=True)
class Consistency:
    level: ConsistencyLevel = ConsistencyLevel.BOUNDED
    guarantee_ts: int = (
        0  # pymilvus: Strong 0 (server picks now), Eventually 1, Bounded 2, Session = last write ts
    )
    snapshot: bool = False  # read the rows live at guarantee_ts (iterator pages after the first)
    # (shard, WAL offset) pairs a Session or Bounded read waits for besides the searcher's own
    # writes: a gateway's writes, when its searchers run apart (``searcher.remote``)
    wait_for: tuple[tuple[int, int], ...] = ()


@dataclass
class SearchRequest:
    collection: str
    anns_field: str | None  # None: the collection's only vector field
    queries: np.ndarray  # (nq, dim) float32; uint8 (nq, dim/8) for binary vectors
    limit: int
    metric: str | None = None  # None: the index's metric (or COSINE without index, like pymilvus' default)
    params: dict[str, Any] = field(default_factory=dict)  # ef, nprobe, radius, range_filter, ...
    filter: str = ""
    filter_params: dict[str, Any] = field(default_factory=dict)
    partitions: list[str] | None = None
    output_fields: list[str] = field(default_factory=list)
    offset: int = 0
    round_decimal: int = -1
    ignore_growing: bool = False
    group_by_field: str | None = None
    group_size: int = 1
    strict_group_size: bool = False
    consistency: Consistency = field(default_factory=Consistency)
    collection_id: int = 0  # the collection the gateway resolved (0: resolve ``collection``)
    shards: frozenset[int] | None = None  # read only these shards (None: every shard held here)
    # BM25 statistics summed over every shard by the gateway (per query: live documents, total
    # length, each query term's document frequency); None: from the shards held here
    bm25_stats: list[tuple[int, float, list[float]]] | None = None


@dataclass
class Hits:
    """One query's results, best first."""

    ids: list[Any]
    distances: np.ndarray  # float32
    fields: pa.Table  # output fields, one row per hit (may have zero columns)


@dataclass(frozen=True)
class Aggregate:
    """One aggregation of a query: ``function`` over ``field`` (None: every row, ``count(*)``),
    reported as ``name`` (the output field as the client wrote it, ``COUNT(c2)`` stays so)."""

    function: str  # count, sum, avg, min, max
    field: str | None
    name: str


@dataclass
class QueryRequest:
    collection: str
    filter: str = ""
    filter_params: dict[str, Any] = field(default_factory=dict)
    output_fields: list[str] = field(default_factory=list)
    ids: list[Any] | None = None  # get by primary key
    limit: int | None = None
    offset: int = 0
    partitions: list[str] | None = None
    ignore_growing: bool = False
    group_by_fields: list[str] = field(default_factory=list)
    aggregates: list[Aggregate] = field(default_factory=list)  # with group_by_fields: per group
    consistency: Consistency = field(default_factory=Consistency)
    collection_id: int = 0  # the collection the gateway resolved (0: resolve ``collection``)
    shards: frozenset[int] | None = None  # read only these shards (None: every shard held here)


@dataclass
class CompactionStatus:
    """What a gateway knows of a compaction: asked for and executing, or ``done``."""

    compaction_id: int
    collection: str
    done: bool = False
    removed: list[int] = field(default_factory=list)
    plans: list[list] = field(default_factory=list)  # [[source segment ids...], target id]
    error: str = ""


class Searcher(Protocol):
    """What the gateway needs from a searcher: the one inside the gateway process, or the client
    of the ``walvus searcher`` processes (``open_searcher``)."""

    def load(self, collection: str, partitions: list[str] | None = None) -> None: ...

    def release(self, collection: str, partitions: list[str] | None = None) -> None: ...

    def loading_progress(self, collection: str) -> int: ...  # percent

    def is_loaded(self, collection: str) -> bool: ...

    def search(self, req: SearchRequest) -> list[Hits]: ...

    # output fields; count(*) -> one column "count(*)"; with group_by_fields or aggregates: one row
    # per group, its grouping fields then one column per aggregate (searcher/aggregation.py)
    def query(self, req: QueryRequest) -> pa.Table: ...

    def note_write(self, collection_id: int, positions: dict[int, int], ts: int) -> None: ...

    def stats(self, collection: str) -> dict[str, Any]: ...  # row_count etc.

    def compaction_requested(self, collection: str, compaction_id: int) -> None: ...

    def compaction(self, compaction_id: int) -> CompactionStatus | None: ...


def open_searcher(bootstrap: str, walvus: Any, settings: Any) -> Searcher:
    """The gateway's searcher, as ``settings.searchers`` says: ``local`` runs one in this process,
    ``remote`` scatters reads over the ``walvus searcher`` processes. With several gateway
    processes behind one port, a client's next call may land on a process that did not make its
    writes (after a reconnect), so Session reads take Strong's barrier."""
    searcher: Any
    if settings.searchers == "remote":
        from searcher.directory import SearcherDirectory
        from searcher.remote import RemoteSearcher

        directory = SearcherDirectory(walvus.kafka.conf, walvus.ns)
        searcher = RemoteSearcher(walvus.catalog, directory, walvus.ns, settings.searcher_retry_seconds)
    else:
        from searcher.service import SearcherService

        searcher = SearcherService.from_settings(bootstrap, walvus)
    searcher.session_is_local = settings.gateway_processes == 1 and not settings.gateway_reuse_port
    return searcher
