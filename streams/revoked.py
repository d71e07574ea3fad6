"""Survive records of partitions the consumer no longer holds when Faust hands them out.

Subscribing a new collection's WAL topic calls aiokafka's ``subscribe``, which replaces the
subscription with one that has no assignment until the rebalance completes
(aiokafka/consumer/subscription_state.py ``_change_subscription``). Faust's generation id only
changes when the new assignment arrives, so its fetcher keeps handing out the records it already
fetched, and for each one asks ``highwater(tp)``, which aiokafka answers with
``assert self._subscription.is_assigned(partition), "Partition is not assigned"``
(aiokafka/consumer/consumer.py). The AssertionError kills Faust's fetcher, and the worker.
The same happens to a record of a partition revoked between its fetch and its delivery.

Here such a record gets no highwater (the last one known, or -1, is reported to the monitor)
and a generation id of -1, so Faust's stream skips it as a record of an older generation: it is
neither processed nor acknowledged. After the rebalance Faust seeks every assigned partition to
its committed offset (table recovery's ``perform_seek``), so the record is read again by whoever
owns the partition; Delta's application transaction keeps that replay exactly once.

Likewise a record of a topic just unsubscribed (a dropped collection's WAL) can still be handed
out after the conductor forgot the topic, and its lookup of the topic's callback raised KeyError,
which crashed the fetcher. Such a record is skipped: its collection is gone.

And a commit of offsets while aiokafka holds no assignment (a re-subscription is under way)
raised ``IllegalStateError('No partitions assigned')``, which Faust turns into a crash. Only the
offsets of partitions aiokafka holds are committed; with none, the commit waits for the next one
(a later commit, or the replay from the committed offset after the rebalance, which Delta keeps
exactly once).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)
STALE_GENERATION = -1
_installed = False


def is_assigned(thread: Any, tp: Any) -> bool:
    """Whether the aiokafka consumer behind a Faust consumer thread holds ``tp`` now."""
    try:
        return bool(thread._ensure_consumer()._subscription.is_assigned(tp))
    except Exception:  # no consumer yet, or aiokafka changed: keep Faust's own behaviour
        return True


def commitable(thread: Any, offsets: Any) -> Any:
    """The offsets of partitions the aiokafka consumer holds now (all of them when it cannot tell)."""
    try:
        held = {
            (tp.topic, tp.partition) for tp in thread._ensure_consumer()._subscription.assigned_partitions()
        }
    except Exception:
        return offsets
    return {tp: off for tp, off in offsets.items() if (tp.topic, tp.partition) in held}


def install() -> None:
    global _installed
    if _installed:
        return
    from faust.transport.drivers import aiokafka as driver

    thread_cls, consumer_cls = driver.AIOKafkaConsumerThread, driver.Consumer
    highwater, to_message = thread_cls.highwater, consumer_cls._to_message

    def guarded_highwater(self: Any, tp: Any) -> int:
        if not is_assigned(self, tp):
            known = getattr(getattr(self.app, "monitor", None), "tp_end_offsets", {})
            return int(known.get(tp, -1))
        return highwater(self, tp)

    def guarded_to_message(self: Any, tp: Any, record: Any) -> Any:
        message = to_message(self, tp, record)
        if not is_assigned(self._thread, tp):
            log.info(
                "skipping a record of a revoked partition topic=%s shard=%s offset=%s", *tp, record.offset
            )
            message.generation_id = STALE_GENERATION
        return message

    commit = thread_cls._commit

    async def guarded_commit(self: Any, offsets: Any) -> bool:
        mine = commitable(self, offsets)
        if not mine:
            log.info("commit deferred: no partition of it is assigned now offsets=%s", len(offsets))
            return False
        return bool(await commit(self, mine))

    thread_cls.highwater = guarded_highwater
    consumer_cls._to_message = guarded_to_message
    thread_cls._commit = guarded_commit
    _guard_unsubscribed()
    _installed = True


def _guard_unsubscribed() -> None:
    from faust.transport.conductor import Conductor

    compile_handler = Conductor._compile_message_handler

    def guarded_compile(self: Any) -> Any:
        handler = compile_handler(self)

        async def on_message(message: Any) -> Any:
            try:
                return await handler(message)
            except KeyError:
                if message.tp in self._tp_to_callback:
                    raise  # not the lookup: a real failure
                log.info(
                    "skipping a record of a topic no longer subscribed topic=%s offset=%s",
                    message.topic,
                    message.offset,
                )
                return None

        return on_message

    Conductor._compile_message_handler = guarded_compile
