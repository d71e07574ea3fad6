"""Typed settings, one object per component, all on one base.

Every setting has a default and one ``WALVUS_*`` environment variable (the Kafka
bootstrap also honours the standard ``KAFKA_BOOTSTRAP_SERVERS``). Secrets are never logged.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class WalvusSettings(BaseSettings):
    """The base: ``WALVUS_`` prefix, and values may also come from a ``.env`` file."""

    model_config = SettingsConfigDict(env_prefix="WALVUS_", env_file=".env", extra="ignore")

    namespace: str = Field("walvus", description="Prefix of every topic; lets deployments share a cluster.")
    data_dir: Path = Field(Path(".walvus"), description="Local state: Kafka data, Delta tables, indexes.")
    site: str = Field("local", description="This deployment's site name, stamped on every write (CDC).")


class KafkaSettings(WalvusSettings):
    bootstrap_servers: str | None = Field(
        None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "WALVUS_KAFKA_BOOTSTRAP_SERVERS"),
        description="An existing cluster to use instead of starting a local broker.",
    )
    kafka_port: int = Field(9092, description="Port of the local broker started by `walvus up`.")
    kafka_cache_dir: Path = Field(
        Path.home() / ".cache" / "walvus", description="Where Kafka's jars are cached."
    )
    kafka_username: str | None = Field(None, description="SASL/PLAIN user for an existing cluster.")
    kafka_password: SecretStr | None = Field(None, description="SASL/PLAIN password.")

    def client_config(self, bootstrap: str) -> dict[str, Any]:
        # librdkafka's own log lines go through Python logging, not straight to stderr
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": logging.getLogger("rdkafka")}
        if self.kafka_username:
            conf.update(
                {
                    "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanisms": "PLAIN",
                    "sasl.username": self.kafka_username,
                    "sasl.password": self.kafka_password.get_secret_value() if self.kafka_password else "",
                }
            )
        return conf


class StorageSettings(WalvusSettings):
    storage_uri: str | None = Field(
        None,
        description="Root URI of the Delta tables and index files (file path, s3://, gs://, az://). "
        "Default: data_dir/tables.",
    )
    storage_options: str = Field(
        "{}",
        description="JSON object of delta-rs storage options (credentials...), also used for index files.",
    )

    @property
    def root(self) -> str:
        return self.storage_uri or str((self.data_dir / "tables").resolve())

    def store(self) -> SegmentStore:  # noqa: F821 - runtime import keeps settings dependency-free
        from walvus.storage import SegmentStore

        return SegmentStore(self.root, self.options)

    @property
    def options(self) -> dict[str, str]:
        return dict(json.loads(self.storage_options or "{}"))


class StreamsSettings(WalvusSettings):
    segment_max_size_mb: float = Field(1024, description="Milvus segment.maxSize, in MB.")
    seal_proportion: float = Field(0.12, description="Milvus segment.sealProportion: seal at maxSize x this.")
    seal_idle_seconds: float = Field(
        10.0, description="Seal a growing segment that got no rows for this long."
    )
    seal_max_rows: int = Field(
        100_000, ge=1, description="Seal a growing segment once it holds this many rows (per shard)."
    )
    seal_max_age_seconds: float = Field(
        300.0,
        gt=0,
        description="Seal a growing segment this long after its first row (Milvus segment max lifetime).",
    )
    worker_tick_seconds: float = Field(0.2, description="How often the worker checks seal policies.")
    session_timeout_seconds: float = Field(10.0, description="Kafka group session timeout of the worker.")

    @property
    def seal_bytes(self) -> int:
        return int(self.segment_max_size_mb * self.seal_proportion * 1024 * 1024)


class SearcherSettings(WalvusSettings):
    interim_index: bool = Field(
        True,
        description="Index growing rows (HNSW) so searches over them stay fast; a collection turns it "
        "off with the property interim_index.enabled=false.",
    )
    interim_min_rows: int = Field(
        1024, ge=1, description="A shard's growing rows are scanned exactly below this."
    )
    interim_m: int = Field(16, ge=4, description="HNSW M of interim indexes.")
    interim_ef_construction: int = Field(40, ge=8, description="HNSW efConstruction of interim indexes.")
    interim_ef: int = Field(64, ge=1, description="HNSW ef of interim indexes when a search gives none.")
    gpu_search: Literal["auto", "off"] = Field(
        "auto",
        description="auto: GPU_* indexes are also searched on the GPU when faiss sees one (else on their "
        "stored CPU copy, GPU_CAGRA as HNSW); off: always on the CPU.",
    )
    bounded_staleness_seconds: float = Field(
        5.0,
        description="Bounded reads are served at once while the searcher held the whole log this recently; "
        "else they wait like Strong.",
    )
    handoff_wait_seconds: float = Field(
        600.0,
        description="How long sealed rows wait for their index before they replace growing rows anyway.",
    )
    searcher_host: str = Field(
        "127.0.0.1", description="walvus searcher: address its RPC server (Arrow Flight) binds and announces."
    )
    searcher_port: int = Field(0, ge=0, description="walvus searcher: RPC port (0: any free port).")
    searcher_advertised_host: str = Field(
        "",
        description="walvus searcher: the host gateways reach it at, when not searcher_host (e.g. it binds "
        "0.0.0.0 in a container named searcher-1).",
    )
    searcher_replica_group: int = Field(
        0,
        ge=0,
        description="walvus searcher: its replica group. A collection loaded with replica_number=N is held "
        "by groups 0..N-1; within a group, Kafka's consumer-group protocol assigns each shard to one searcher.",
    )
    searcher_metrics_port: int = Field(
        0,
        ge=0,
        description="walvus searcher: HTTP port of its Prometheus /metrics; 0 disables (several searchers "
        "on one machine each need their own).",
    )
    searcher_metrics_host: str = Field("127.0.0.1", description="Address a searcher's /metrics binds.")
    searcher_session_timeout_ms: int = Field(
        6000,
        ge=1000,
        description="walvus searcher: how long its group waits for a silent searcher before its shards move.",
    )

    def interim(self) -> InterimSettings:  # noqa: F821 - runtime import keeps settings dependency-free
        from searcher.interim import InterimSettings

        return InterimSettings(
            enabled=self.interim_index,
            min_rows=self.interim_min_rows,
            m=self.interim_m,
            ef_construction=self.interim_ef_construction,
            ef_search=self.interim_ef,
        )


class IndexerSettings(WalvusSettings):
    index_retry_first_seconds: float = Field(
        5.0, gt=0, description="Retry a failed index build after this long, doubling each failure."
    )
    index_retry_max_seconds: float = Field(
        300.0, gt=0, description="Longest wait between index build retries."
    )
    indexer_metrics_port: int = Field(
        9095, description="HTTP port of the indexer's Prometheus /metrics; 0 disables."
    )
    indexer_metrics_host: str = Field("127.0.0.1", description="Address the indexer's /metrics binds.")
    index_build_threads: int = Field(
        0, ge=0, description="OpenMP threads of an index build; 0: one per core."
    )
    indexer_nice: int = Field(
        0,
        ge=0,
        le=19,
        description="How far the indexer lowers its CPU priority. 0: builds keep pace with the stream "
        "(at 5 with one thread, 100k-row HNSW builds fell behind 1,000 rows/s and growing data piled up).",
    )

    compaction_check_seconds: float = Field(
        60.0, gt=0, description="How often the compactor checks every collection against its policy."
    )
    compaction_dead_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Compact a collection once this fraction of its stored rows is dead (superseded, "
        "deleted, TTL-expired or in a dropped partition).",
    )
    compaction_small_segment_rows: int = Field(
        65_536,
        ge=1,
        description="A sealed segment with fewer rows than this is small (merged by compaction).",
    )
    compaction_small_segments: int = Field(
        8, ge=2, description="Compact a shard's partition once it has this many small segments."
    )
    compaction_max_segment_rows: int = Field(
        1_000_000, ge=1, description="Compaction writes segments of at most this many rows."
    )
    vacuum_retention_seconds: float = Field(
        7 * 24 * 3600.0,
        ge=0,
        description="Files a compaction removed from a table stay this long (time travel), then are "
        "deleted (rounded up to whole hours; 0 deletes them at once).",
    )

    def compaction_policy(self) -> CompactionPolicy:  # noqa: F821 - runtime import keeps settings dependency-free
        from indexer.compaction import CompactionPolicy

        return CompactionPolicy(
            dead_fraction=self.compaction_dead_fraction,
            small_segment_rows=self.compaction_small_segment_rows,
            small_segments=self.compaction_small_segments,
            max_segment_rows=self.compaction_max_segment_rows,
            retention_seconds=self.vacuum_retention_seconds,
        )

    def build_threads(self) -> int:
        return self.index_build_threads or (os.cpu_count() or 1)


class GcSettings(WalvusSettings):
    gc_enabled: bool = Field(
        True,
        description="Run garbage collection (dropped collections and indexes, WAL retention) in the indexer.",
    )
    gc_interval_seconds: float = Field(60.0, gt=0, description="Seconds between garbage-collection passes.")
    gc_dropped_retention_seconds: float = Field(
        10_800.0,
        ge=0,
        description="How long a dropped collection's tables and WAL stay (Delta time travel) before they "
        "are removed (Milvus's dropTolerance, 3 h).",
    )
    gc_wal_retention_seconds: float = Field(
        604_800.0,
        ge=0,
        description="WAL records stay at least this long (Kafka's usual 7 days), so a CDC task started "
        "from the earliest position still finds them; older ones go once Delta holds them.",
    )
    gc_index_grace_seconds: float = Field(
        300.0,
        ge=0,
        description="Index files of a segment that left the rows table (compacted away) stay this long, "
        "so a searcher that listed the segment just before can still load its index.",
    )
    gc_truncate_wal: bool = Field(
        True,
        description="Delete WAL records that are committed to Delta and replicated by every CDC task; "
        "false keeps the WAL whole.",
    )


class LimitSettings(WalvusSettings):
    max_request_mb: float = Field(64, description="Largest accepted insert/search request.")
    max_dim: int = Field(32_768, description="Largest vector dimension.")
    max_collections: int = Field(65_535, description="Collections, counting shards x partitions each.")
    max_topk: int = Field(16_384, description="Largest topk + offset, and largest nq.")


class SnapshotSettings(WalvusSettings):
    restore_batch_rows: int = Field(
        10_000, ge=1, description="Rows per insert a snapshot restore writes (fewer when rows are large)."
    )
    restore_stall_seconds: float = Field(
        600.0,
        gt=0,
        description="A restore job with no progress for this long is reported failed (its gateway stopped).",
    )


class GatewaySettings(WalvusSettings):
    host: str = Field("127.0.0.1", description="Address the gRPC server binds.")
    port: int = Field(19530, description="Port of the Milvus-compatible gRPC server.")
    users: str = Field(
        "",
        description="user:password pairs, comma separated, accepted when authorization is disabled; "
        "empty disables authentication.",
    )
    authorization_enabled: bool = Field(
        False,
        description="Milvus's common.security.authorizationEnabled: log in as a stored user (create_user) "
        "and check every call against the user's roles and grants.",
    )
    root_password: SecretStr = Field(
        SecretStr("Milvus"), description="Initial password of the root user (until update_password)."
    )
    tls_cert: Path | None = Field(None, description="PEM certificate: enables TLS on the gRPC port.")
    tls_key: Path | None = Field(None, description="PEM private key for tls_cert.")
    grpc_workers: int = Field(16, description="gRPC server worker threads.")
    gateway_processes: int = Field(
        1,
        ge=1,
        description="Gateway processes sharing the port (SO_REUSEPORT). Each holds its own searcher "
        "(memory x N) and runs on its own core; a client stays on the process it connected to.",
    )
    searchers: Literal["local", "remote"] = Field(
        "local",
        description="local: the searcher runs inside the gateway process; remote: searches and queries go to "
        "the walvus searcher processes that hold each shard (scatter-gather).",
    )
    searcher_processes: int = Field(
        1, ge=1, description="remote: how many walvus searcher processes `walvus up` starts on this machine."
    )
    searcher_retry_seconds: float = Field(
        30.0, description="remote: how long a read waits for a shard to get a searcher again before it fails."
    )
    gateway_reuse_port: bool = Field(
        False, description="Bind with SO_REUSEPORT (the extra gateway processes)."
    )
    metrics_port: int = Field(
        9091, description="HTTP port of /metrics (Prometheus) and /healthz; 0 disables."
    )
    rest_port: int = Field(
        19531,
        description="HTTP port of Milvus's RESTful API v2 (/v2/vectordb/...), beside the gRPC port; 0 disables.",
    )
