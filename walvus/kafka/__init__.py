"""Kafka plumbing for walvus: a local single-node KRaft broker launcher."""

from walvus.kafka.exceptions import KafkaLauncherError
from walvus.kafka.local import (
    DEFAULT_CACHE_DIR,
    KAFKA_VERSION,
    LocalKafka,
    bootstrap_from_env,
    free_port,
    new_cluster_id,
    resolve_jars,
)

__all__ = [
    "DEFAULT_CACHE_DIR",
    "KAFKA_VERSION",
    "KafkaLauncherError",
    "LocalKafka",
    "bootstrap_from_env",
    "free_port",
    "new_cluster_id",
    "resolve_jars",
]
