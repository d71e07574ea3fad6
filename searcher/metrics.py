"""The searcher's Prometheus metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge

CONSUMED = Gauge(
    "walvus_searcher_consumed_offset",
    "Last WAL offset the searcher has applied, per collection and shard",
    ["collection", "shard"],
)
INDEX_ATTACH_FAILURES = Counter(
    "walvus_searcher_index_attach_failures",
    "Index files a searcher failed to download or read, and index folders it failed to list "
    "(each is retried with backoff), per error type",
    ["error"],
)


class ConsumedGauge:
    """``walvus_searcher_consumed_offset{collection,shard}``: the last WAL offset this searcher applied."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, int], Any] = {}

    def set(self, collection: str, shard: int, offset: int) -> None:
        child = self._children.get((collection, shard))
        if child is None:
            child = self._children[(collection, shard)] = CONSUMED.labels(collection, str(shard))
        child.set(offset)

    def forget(self, collection: str) -> None:
        for key in [k for k in self._children if k[0] == collection]:
            del self._children[key]
            CONSUMED.remove(key[0], str(key[1]))
