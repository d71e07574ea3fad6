"""Topic names. A namespace lets several walvus deployments share one Kafka cluster."""

from __future__ import annotations


def catalog_topic(ns: str) -> str:
    return f"{ns}.catalog"


def segments_topic(ns: str) -> str:
    return f"{ns}.segments"


def ingest_topic(ns: str) -> str:
    return f"{ns}.ingest"


def dead_letter_topic(ns: str) -> str:
    return f"{ns}.ingest.dlq"


def wal_topic(ns: str, collection_id: int) -> str:
    return f"{ns}.wal.{collection_id}"


def wal_prefix(ns: str) -> str:
    return f"{ns}.wal."


def snapshots_topic(ns: str) -> str:
    """Snapshots and restore jobs of this site (compacted; not replicated: they pin this site's tables)."""
    return f"{ns}.snapshots"


def searcher_group(ns: str, replica_group: int) -> str:
    """The consumer group whose members are the searchers of one replica group (Kafka assigns each
    a share of the WAL partitions, the shards)."""
    return f"{searcher_groups_prefix(ns)}{replica_group}"


def searcher_groups_prefix(ns: str) -> str:
    return f"{ns}.searchers."


def presence_topic(ns: str) -> str:
    """The topic searchers' presence groups subscribe to, so a searcher holding nothing is still seen."""
    return f"{ns}.searchers"


def presence_group(group: str) -> str:
    return f"{group}.presence"
