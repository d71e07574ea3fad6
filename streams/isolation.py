"""Make Faust's consumer read only committed records.

CDC writes replicated WAL records inside Kafka transactions; a worker must never
materialise records of an aborted transaction. Faust only reads committed records when
it runs its own exactly-once mode, so the consumer it builds is adjusted here.
"""

from __future__ import annotations

from typing import Any

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    import aiokafka
    from faust.transport.drivers import aiokafka as driver

    original = driver.AIOKafkaConsumerThread._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        real = aiokafka.AIOKafkaConsumer

        def consumer(*args: Any, **kwargs: Any) -> Any:
            kwargs["isolation_level"] = "read_committed"
            return real(*args, **kwargs)

        driver.aiokafka.AIOKafkaConsumer = consumer  # type: ignore[misc]
        try:
            return original(self, transport)
        finally:
            driver.aiokafka.AIOKafkaConsumer = real  # type: ignore[misc]

    driver.AIOKafkaConsumerThread._create_worker_consumer = create
    _installed = True
