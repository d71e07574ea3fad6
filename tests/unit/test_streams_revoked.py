"""A record of a partition revoked after its fetch: skipped as a stale generation, not a crash.

The real aiokafka consumer (never started: its assignment is set by hand) and Faust's real
driver methods; only Faust's thread and app objects are stand-ins.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiokafka
import pytest
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from streams import revoked

GENERATION = 3


def _record(tp: TP, offset: int) -> SimpleNamespace:
    return SimpleNamespace(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=1_000,
        timestamp_type=0,
        headers=[],
        key=None,
        value=b"wal",
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=3,
    )


async def _scenario() -> None:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    mine, gone = TP("ns.wal.1", 0), TP("ns.wal.1", 1)
    subscription = consumer._subscription
    subscription.subscribe({"ns.wal.1"})
    subscription.assign_from_subscribed({mine, gone})
    assert consumer.highwater(gone) is None  # assigned, nothing fetched yet

    # a new collection's WAL topic is subscribed: no partition is assigned until the rebalance ends,
    # and Faust, still in the old generation, asks the highwater of every record it hands out
    subscription.subscribe({"ns.wal.1", "ns.wal.2"})
    with pytest.raises(AssertionError, match="Partition is not assigned"):
        consumer.highwater(gone)  # what killed the worker

    revoked.install()
    app = SimpleNamespace(
        consumer_generation_id=GENERATION, monitor=SimpleNamespace(tp_end_offsets={gone: 42})
    )
    thread = SimpleNamespace(
        _ensure_consumer=lambda: consumer, app=app, consumer=SimpleNamespace(in_transaction=False)
    )
    faust_consumer = SimpleNamespace(_thread=thread, app=app)
    for tp in (mine, gone):  # during the rebalance every record is stale
        assert driver.Consumer._to_message(faust_consumer, tp, _record(tp, 4)).generation_id == -1
    assert driver.AIOKafkaConsumerThread.highwater(thread, mine) == -1

    subscription.assign_from_subscribed({mine})  # the rebalance ends; "gone" went to another worker
    assert driver.AIOKafkaConsumerThread.highwater(thread, gone) == 42
    stale = driver.Consumer._to_message(faust_consumer, gone, _record(gone, 5))
    assert stale.generation_id == revoked.STALE_GENERATION != app.consumer_generation_id

    # a partition still held is untouched
    assert driver.AIOKafkaConsumerThread.highwater(thread, mine) is None  # nothing fetched yet
    kept = driver.Consumer._to_message(faust_consumer, mine, _record(mine, 6))
    assert (kept.generation_id, kept.offset, kept.value) == (GENERATION, 6, b"wal")
    await consumer.stop()


def test_a_revoked_partitions_record_is_skipped_as_stale_instead_of_crashing() -> None:
    asyncio.run(_scenario())


def test_faust_skips_messages_of_another_generation() -> None:
    """The guard relies on this check in Faust's stream iterator (faust/streams.py)."""
    import inspect

    from faust import streams

    assert "message.generation_id != self.app.consumer_generation_id" in inspect.getsource(streams.Stream)


def test_a_record_of_a_topic_no_longer_subscribed_is_skipped_not_a_crash() -> None:
    """A dropped collection's WAL topic is unsubscribed while records of it are still handed out."""
    from faust.transport.conductor import Conductor

    revoked.install()
    called: list[int] = []

    async def callback(message: SimpleNamespace) -> None:
        called.append(message.offset)

    async def scenario() -> None:
        mine, gone = TP("ns.wal.1", 0), TP("ns.wal.2", 0)
        conductor = SimpleNamespace(
            app=SimpleNamespace(client_only=False),
            _tp_to_callback={mine: callback},
            _tp_to_callback_lock=asyncio.Lock(),
        )
        on_message = Conductor._compile_message_handler(conductor)
        await on_message(SimpleNamespace(tp=mine, topic=mine.topic, offset=1))
        assert await on_message(SimpleNamespace(tp=gone, topic=gone.topic, offset=7)) is None
        conductor._tp_to_callback[gone] = callback
        await on_message(SimpleNamespace(tp=gone, topic=gone.topic, offset=8))

    asyncio.run(scenario())
    assert called == [1, 8]


def test_only_offsets_of_held_partitions_are_committed() -> None:
    """During a re-subscription aiokafka holds no assignment: committing then crashed the worker."""
    mine, other = TP("ns.wal.1", 0), TP("ns.wal.2", 0)

    async def scenario() -> None:
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        thread = SimpleNamespace(_ensure_consumer=lambda: consumer)
        consumer._subscription.subscribe(topics={mine.topic, other.topic})
        assert revoked.commitable(thread, {mine: 5, other: 9}) == {}  # subscribed, nothing assigned yet
        consumer._subscription.assign_from_subscribed({aiokafka.TopicPartition(mine.topic, 0)})
        assert revoked.commitable(thread, {mine: 5, other: 9}) == {mine: 5}

    asyncio.run(scenario())
    broken = SimpleNamespace(_ensure_consumer=lambda: None)
    assert revoked.commitable(broken, {mine: 5}) == {mine: 5}  # cannot tell: Faust's own behaviour
