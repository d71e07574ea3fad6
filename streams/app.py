"""The streams worker: Faust agents for the WAL (-> Delta segments) and the ingest topic (-> WAL)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from schemas.segments import SegmentSealed
from schemas.topics import dead_letter_topic, ingest_topic, segments_topic, wal_topic
from streams.ingest import IngestValidator
from streams.materializer import Materializer
from streams.seal_policy import SealPolicy
from streams.segment_writer import SegmentWriter
from streams.subscription import DynamicSubscription
from streams.wal_range import WalRangeReader
from walvus.catalog import Catalog
from walvus.log import MAX_MESSAGE_BYTES, KafkaLog, LogMessage
from walvus.once_log import OnceLog
from walvus.settings import KafkaSettings, StorageSettings, StreamsSettings

log = logging.getLogger(__name__)


class StreamsWorker:
    """Builds the Faust app and owns what its agents share."""

    def __init__(self, bootstrap: str, settings: StreamsSettings | None = None) -> None:
        self.settings = settings or StreamsSettings()
        kafka_settings = KafkaSettings()
        storage = StorageSettings()
        ns = self.settings.namespace
        self.kafka = KafkaLog(kafka_settings.client_config(bootstrap))
        self.catalog = Catalog(self.kafka, ns)
        self.store = storage.store()
        self.data_dir = storage.data_dir
        self.ns = ns
        self.control_topic = f"{ns}.streams.control"
        for t in (self.control_topic, segments_topic(ns), dead_letter_topic(ns)):
            self.kafka.ensure_topic(t, 1)
        self.kafka.ensure_topic(ingest_topic(ns), 1)
        self.catalog.start()
        writer = SegmentWriter(self.store, self.catalog_by_id)
        policy = SealPolicy(
            self.settings.seal_bytes,
            self.settings.seal_idle_seconds,
            self.settings.seal_max_rows,
            self.settings.seal_max_age_seconds,
        )
        self._gap_reader = WalRangeReader(kafka_settings.client_config(bootstrap))
        self.materializer = Materializer(writer, policy, self.announce, read_range=self._gap_reader.read)
        self.validator = IngestValidator(self.catalog, self.settings.site)
        self.lock = asyncio.Lock()
        self.app = self._build_app(bootstrap)

    def catalog_by_id(self, collection_id: int) -> Any:
        return self.catalog.by_id(collection_id)

    def announce(self, sealed: SegmentSealed) -> None:
        self.kafka.append([LogMessage(segments_topic(self.ns), 0, sealed.to_json())])

    def wal_topics(self) -> list[str]:
        return [wal_topic(self.ns, c.collection_id) for c in self.catalog.collections()]

    def _build_app(self, bootstrap: str) -> faust.App:
        datadir = self.data_dir / "streams" / self.ns  # Faust's own state; it creates only the last level
        datadir.mkdir(parents=True, exist_ok=True)
        app = faust.App(
            f"{self.ns}-streams",
            broker=f"kafka://{bootstrap}",
            store="memory://",
            datadir=str(datadir),
            web_enabled=False,
            autodiscover=False,
            topic_allow_declare=False,
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            broker_commit_interval=0.5,
            stream_wait_empty=False,
            consumer_max_fetch_size=MAX_MESSAGE_BYTES,
            broker_max_poll_records=500,
            stream_buffer_maxsize=2000,
            broker_session_timeout=self.settings.session_timeout_seconds,
            broker_heartbeat_interval=1.0,
            broker_rebalance_timeout=self.settings.session_timeout_seconds * 2,
        )
        wal = app.topic(self.control_topic, *self.wal_topics(), value_serializer="raw", key_serializer="raw")
        ingest = app.topic(ingest_topic(self.ns), value_serializer="raw", key_serializer="raw")
        subscription = DynamicSubscription(app, wal)
        self.catalog.add_listener(
            lambda info: (
                subscription.request([wal_topic(self.ns, info.collection_id)])
                if info.active
                else subscription.forget([wal_topic(self.ns, info.collection_id)])
            )
        )
        mat = self.materializer

        async def ack(tokens: list[Any]) -> None:
            for ev in tokens:
                ev.ack()

        @app.agent(wal, name="materialize")
        async def materialize(stream: faust.StreamT) -> None:
            async for event in stream.noack().events():
                msg = event.message
                if msg.topic == self.control_topic or msg.value is None:
                    event.ack()
                    continue
                async with self.lock:
                    # a record taken before a rebalance that ran while this waited for the lock is
                    # still added: a partition that stays assigned is not always sought back, so
                    # skipping it could lose it; if it is read again, the buffer keeps one copy
                    tokens = await asyncio.to_thread(
                        mat.add, msg.topic, msg.partition, msg.offset, msg.value, event
                    )
                await ack(tokens)

        @app.agent(ingest, name="ingest")
        async def ingest_agent(stream: faust.StreamT) -> None:
            async for events in stream.take_events(2000, within=0.05):
                records = [(e.message.partition, e.message.offset, e.message.value) for e in events]
                messages = await asyncio.to_thread(self.validator.process, records)
                await asyncio.to_thread(self.kafka.append, messages)

        failing = OnceLog(log)

        @app.timer(self.settings.worker_tick_seconds)
        async def seal_idle() -> None:
            # an exception would end this timer for good (no more idle seals, no new subscriptions):
            # a failed seal keeps its buffer and is tried again on the next tick
            due = mat.due()
            if due:
                try:
                    async with self.lock:
                        tokens = await asyncio.to_thread(mat.seal_all, due)
                except Exception as exc:
                    failing.error("idle seal failed, retrying next tick", exc, shards=len(due))
                else:
                    failing.clear()
                    await ack(tokens)
            try:
                subscription.reconcile()
            except Exception as exc:
                failing.error("subscription reconcile failed, retrying next tick", exc)

        @app.on_partitions_revoked.connect
        async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            shards = [(tp.topic, tp.partition) for tp in revoked if tp.topic.startswith(f"{self.ns}.wal.")]
            if not shards:
                return
            async with self.lock:
                tokens = await asyncio.to_thread(mat.seal_all, shards)
                mat.drop(shards)
            await ack(tokens)

        @app.on_partitions_assigned.connect
        async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
            # Buffered records of partitions still ours are kept: aiokafka does not always read a
            # partition again from its committed offset after a rebalance, so dropping them lost
            # them (churn test: a collection's first insert missing from Delta). What is read again
            # is deduplicated by offset, and cached positions are re-read from Delta (another worker
            # may have written meanwhile). Buffers of partitions no longer ours are sealed and let go.
            mine = {(tp.topic, tp.partition) for tp in assigned if tp.topic.startswith(f"{self.ns}.wal.")}
            async with self.lock:  # not while a record is being added
                others = [k for k in mat.buffers if k not in mine]
                tokens = await asyncio.to_thread(mat.seal_all, others) if others else []
                mat.drop(others)
                mat.refresh(mine)
            await ack(tokens)

        return app


def run(bootstrap: str, loglevel: str = "WARNING") -> None:
    """Run the worker until SIGTERM/SIGINT."""
    from faust.worker import Worker

    from streams import isolation, revoked

    isolation.install()
    revoked.install()
    worker = StreamsWorker(bootstrap)
    Worker(worker.app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()
