"""The gateway's searcher when searchers run as their own processes: scatter-gather over Flight.

``RemoteSearcher`` is a ``walvus.searcher.Searcher``. For each read it asks the directory which
searcher holds each shard of the collection, sends one request per searcher naming the shards
it should read, and merges the answers (``searcher.merge``). Each searcher enforces the read's
consistency on its own shards, so Strong still sees every acknowledged write. A searcher that
does not answer is skipped for a while and its shards go to another replica group's holder; a
shard nobody holds is waited for (Kafka moves it within the group's session timeout) up to
``WALVUS_SEARCHER_RETRY_SECONDS``, then the read fails with a clear error.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.flight as flight

from schemas.catalog import CollectionInfo
from schemas.exceptions import CollectionNotLoaded, WalvusError
from schemas.topics import wal_topic
from searcher.channel import SearcherChannel
from searcher.directory import DownList, Layout, SearcherDirectory
from searcher.merge import merge_hits, merge_rows, shard_query, sum_bm25
from searcher.wire import decode_error, decode_hits, encode_query, encode_search, metric_of, shards_of
from walvus.searcher import (
    CompactionStatus,
    Consistency,
    ConsistencyLevel,
    Hits,
    QueryRequest,
    SearchRequest,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
STREAM_IDLE_SECONDS = 2.0
_GONE = (flight.FlightUnavailableError, flight.FlightTimedOutError, flight.FlightCancelledError, OSError)


@dataclass(frozen=True)
class Replica:
    group: int
    members: list[str]
    leaders: dict[int, str]  # shard -> address ("" while none holds it)


class ShardUnavailable(WalvusError):
    code = 503  # Milvus: service not ready


class RemoteSearcher:
    def __init__(
        self, catalog: Any, directory: SearcherDirectory, namespace: str, retry_seconds: float = 30.0
    ) -> None:
        self.catalog = catalog
        self.directory = directory
        self.ns = namespace
        self.retry_seconds = retry_seconds
        self.down = DownList()
        # False when a client's writes may have gone through another gateway process on the same
        # port: Session reads then take Strong's barrier (as the searcher inside a gateway does)
        self.session_is_local = True
        self._writes: dict[int, dict[int, int]] = {}  # collection id -> shard -> last WAL offset written here
        self._writes_lock = threading.Lock()
        self._channels: dict[str, SearcherChannel] = {}
        self._channels_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(32, thread_name_prefix="scatter")
        self._turn = itertools.count()
        self._closed = threading.Event()
        threading.Thread(target=self._close_idle_streams, name="searcher-streams", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self.directory.stop()
        self._pool.shutdown(wait=False)
        for c in self._channels.values():
            c.close()

    # the calls ---------------------------------------------------------------------------------
    def _channel(self, address: str) -> SearcherChannel:
        c = self._channels.get(address)
        if c is None:
            with self._channels_lock:
                c = self._channels.get(address) or self._channels.setdefault(
                    address, SearcherChannel(address)
                )
        return c

    def _close_idle_streams(self) -> None:
        """A searcher's SIGTERM waits for the streams open to it: idle ones do not stay open long."""
        while not self._closed.wait(1.0):
            for c in list(self._channels.values()):
                c.close_idle(STREAM_IDLE_SECONDS)

    def _get(self, address: str, ticket: bytes) -> pa.Table:
        return self._channel(address).call(ticket)

    def _action(self, address: str, kind: str, body: bytes | dict = b"") -> Any:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        results = list(self._channel(address).client.do_action(flight.Action(kind, raw)))
        return json.loads(results[0].body.to_pybytes()) if results else None

    # where each shard is read ----------------------------------------------------------------------
    def _info(self, name: str, collection_id: int) -> CollectionInfo:
        info = self.catalog.by_id(collection_id) if collection_id else None
        info = info or self.catalog.require(name)
        if not info.loaded:
            raise CollectionNotLoaded(info.name)
        return info

    def _plan(self, layout: Layout, info: CollectionInfo, shards: set[int]) -> dict[str, set[int]]:
        topic = wal_topic(self.ns, info.collection_id)
        plan: dict[str, set[int]] = {}
        turn = next(self._turn)
        for s in sorted(shards):
            owners = [o for o in layout.owners_of(topic, s) if o.replica_group < info.replica_number]
            live = [o for o in owners if not self.down.is_down(o.address)] or owners
            if live:
                pick = live[turn % len(live)]  # spread reads over the replica groups
                plan.setdefault(pick.address, set()).add(s)
        return plan

    def _scatter(
        self, info: CollectionInfo, call: Callable[[str, frozenset[int]], tuple[T, frozenset[int]]]
    ) -> list[T]:
        """``call(address, shards)`` on the searchers holding every shard of ``info`` once."""
        remaining = set(range(info.shards_num))
        results: list[T] = []
        deadline = time.monotonic() + self.retry_seconds
        layout = self.directory.layout()
        while remaining:
            plan = self._plan(layout, info, remaining)
            # one searcher is called on this thread (first: ``_Now`` calls when asked), the others
            # on the pool meanwhile
            futures: dict[str, Any] = {}
            for i, (a, s) in enumerate(plan.items()):
                futures[a] = (
                    _Now(call, a, frozenset(s)) if i == 0 else self._pool.submit(call, a, frozenset(s))
                )
            for address, fut in futures.items():
                try:
                    result, covered = fut.result()
                except _GONE as exc:
                    log.warning("searcher unreachable, trying another address=%s error=%s", address, exc)
                    self.down.mark(address)
                    continue
                except flight.FlightError as exc:
                    raise decode_error(str(exc)) or WalvusError(f"searcher {address} failed: {exc}") from None
                self.down.clear(address)
                covered = covered & plan[address]
                if covered:
                    results.append(result)
                    remaining -= covered
            if not remaining:
                break
            if time.monotonic() > deadline:
                raise ShardUnavailable(
                    f"no walvus searcher serves shard(s) {sorted(remaining)} of collection {info.name} "
                    f"(searchers seen: {layout.addresses or 'none'}); start one with `walvus searcher`",
                    collection=info.name,
                )
            layout = self.directory.refresh(timeout=2.0)
            time.sleep(0.05)
        return results

    # Searcher ----------------------------------------------------------------------------------
    def search(self, req: SearchRequest) -> list[Hits]:
        info = self._info(req.collection, req.collection_id)
        req = replace(
            req, collection_id=info.collection_id, consistency=self._consistency(info, req.consistency)
        )
        if info.shards_num > 1 and _is_bm25(info, req):
            counts = self._scatter(info, lambda a, s: self._bm25(a, replace(req, shards=s)))
            req = replace(req, bm25_stats=sum_bm25(counts))
        sub = replace(req, limit=req.limit + req.offset, offset=0)

        def one(address: str, shards: frozenset[int]) -> tuple[tuple[list[Hits], str], frozenset[int]]:
            table = self._get(address, encode_search(replace(sub, shards=shards)))
            return (decode_hits(table), metric_of(table)), shards_of(table)

        parts = self._scatter(info, one)
        metric = next((m for _, m in parts if m), "")
        return merge_hits([h for h, _ in parts], len(req.queries), metric, req)

    def _bm25(self, address: str, req: SearchRequest) -> tuple[list[Any], frozenset[int]]:
        return self._action(address, "bm25", encode_search(req)) or [], req.shards or frozenset()

    def query(self, req: QueryRequest) -> pa.Table:
        info = self._info(req.collection, req.collection_id)
        req = replace(
            req, collection_id=info.collection_id, consistency=self._consistency(info, req.consistency)
        )
        sub = shard_query(req)

        def one(address: str, shards: frozenset[int]) -> tuple[pa.Table, frozenset[int]]:
            table = self._get(address, encode_query(replace(sub, shards=shards)))
            return table.replace_schema_metadata(None), shards_of(table)

        return merge_rows(self._scatter(info, one), req, info.schema.primary.name)

    def load(self, collection: str, partitions: list[str] | None = None) -> None:
        """The catalog says it is loaded (the gateway published it); the searchers follow."""

    def release(self, collection: str, partitions: list[str] | None = None) -> None:
        """As ``load``: the searchers drop what the catalog says is released."""

    def replicas_of(self, info: CollectionInfo) -> list[Replica]:
        """One per replica group serving ``info``: its searchers and each shard's holder."""
        layout = self.directory.layout()
        topic = wal_topic(self.ns, info.collection_id)
        out = []
        for g in range(info.replica_number):
            leaders = {
                s: next((o.address for o in layout.owners_of(topic, s) if o.replica_group == g), "")
                for s in range(info.shards_num)
            }
            out.append(Replica(g, sorted(layout.members.get(g, [])), leaders))
        return out

    def replica_groups(self) -> list[int]:
        return sorted(self.directory.layout().members)

    def loading_progress(self, collection: str) -> int:
        info = self.catalog.require(collection)
        held = self._held()
        worst = 100
        for rg in range(info.replica_number):
            for s in range(info.shards_num):
                best = max(
                    (
                        p
                        for (g, cid, shard), p in held.items()
                        if (g, cid, shard) == (rg, info.collection_id, s)
                    ),
                    default=0,
                )
                worst = min(worst, best)
        return worst

    def _held(self) -> dict[tuple[int, int, int], int]:
        """(replica group, collection id, shard) -> load progress, from every searcher."""
        out: dict[tuple[int, int, int], int] = {}
        layout = self.directory.layout()
        for rg, addresses in layout.members.items():
            for a in addresses:
                try:
                    held = self._action(a, "held") or {}
                except _GONE:
                    continue
                for cid, (shards, progress) in held.items():
                    for s in shards:
                        key = (rg, int(cid), int(s))
                        out[key] = max(out.get(key, 0), int(progress))
        return out

    def is_loaded(self, collection: str) -> bool:
        info = self.catalog.get(collection)
        return info is not None and info.loaded and self.loading_progress(collection) >= 100

    def note_write(self, collection_id: int, positions: dict[int, int], ts: int) -> None:
        """This gateway's writes: Session and Bounded reads ask the searchers to wait for them."""
        with self._writes_lock:
            known = self._writes.setdefault(collection_id, {})
            for s, off in positions.items():
                known[s] = max(known.get(s, -1), off)

    def _consistency(self, info: CollectionInfo, c: Consistency) -> Consistency:
        if c.level == ConsistencyLevel.SESSION and not self.session_is_local:
            return replace(c, level=ConsistencyLevel.STRONG)
        if c.level in (ConsistencyLevel.SESSION, ConsistencyLevel.BOUNDED):
            with self._writes_lock:
                mine = self._writes.get(info.collection_id, {})
                return replace(c, wait_for=tuple(sorted(mine.items())))
        return c

    def stats(self, collection: str) -> dict[str, Any]:
        info = self.catalog.require(collection)
        if not info.loaded:
            return {"row_count": None}

        def one(address: str, shards: frozenset[int]) -> tuple[dict[str, Any], frozenset[int]]:
            held = self._action(address, "held") or {}
            mine = frozenset(held.get(str(info.collection_id), [[], 0])[0])
            return self._action(address, "stats", {"collection_id": info.collection_id}), mine

        total: dict[str, Any] = {}
        for part in self._scatter(info, one):
            for k, v in part.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    total[k] = total.get(k, 0) + v
                elif isinstance(v, str):
                    total[k] = ",".join(x for x in (total.get(k, ""), v) if x)
                else:
                    total.setdefault(k, v)
        return total

    def compaction_requested(self, collection: str, compaction_id: int) -> None:
        for a in self.directory.layout().addresses:
            try:
                self._action(
                    a, "compaction_requested", {"collection": collection, "compaction_id": compaction_id}
                )
            except _GONE:
                continue

    def compaction(self, compaction_id: int) -> CompactionStatus | None:
        for a in self.directory.layout().addresses:
            try:
                got = self._action(a, "compaction", {"compaction_id": compaction_id})
            except _GONE:
                continue
            if got is not None:
                return CompactionStatus(**got)
        return None


class _Now:
    """A call made when its result is asked for, like a future of the pool."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._fn, self._args = fn, args

    def result(self) -> Any:
        return self._fn(*self._args)


def _is_bm25(info: CollectionInfo, req: SearchRequest) -> bool:
    vectors = info.schema.vector_fields
    name = req.anns_field or (vectors[0].name if len(vectors) == 1 else None)
    idx = info.indexes.get(name) if name else None
    return (req.metric or (idx.metric_type if idx else "")).upper() == "BM25"


__all__ = ["RemoteSearcher", "ShardUnavailable"]
