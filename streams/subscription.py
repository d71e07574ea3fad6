"""Grow a running Faust agent's subscription as collections (and their WAL topics) appear.

Faust's pattern subscriptions do not work with its aiokafka driver, and its conductor
drops a resubscription that arrives during a rebalance, so the wanted topics are kept
here and re-requested from the event loop until the consumer really holds them.

A group leader assigns only the topics its metadata knows partitions of: a topic it did not
know then (just created, or the broker was still loading after a restart) stays unassigned
until the next rebalance, which nothing would start. The leader's assignments are watched,
and such topics are asked for again once their partitions are known.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0
MAX_UNKNOWN_ASKS = 12  # about a minute of re-asking for a topic the consumer has no partitions of


class DynamicSubscription:
    def __init__(self, app: Any, channel: Any) -> None:
        self.app = app
        self.channel = channel
        self._pending: set[str] = set()
        self._unwanted: set[str] = set()  # WAL topics of dropped collections (deleted later by the GC)
        self._lock = threading.Lock()
        self._asked_at = 0.0
        self._unknown_asks: dict[str, int] = {}
        self._unassigned: set[str] = set()  # subscribed, but left out of the last assignment we made
        app.topics._resubscribe_sleep_lock_seconds = 0.2  # default 45 s: far too slow for new collections
        self._watch_assignments(app.assignor)

    def _watch_assignments(self, assignor: Any) -> None:
        """Note the subscribed topics a group assignment made here (as leader) had to leave out."""
        assign = assignor.assign

        def assign_and_note(cluster: Any, members: Any) -> Any:
            result = assign(cluster, members)
            subscribed = {t for m in members.values() for t in getattr(m, "subscription", ())}
            left_out = {t for t in subscribed if not cluster.partitions_for_topic(t)}
            if left_out:
                log.info(
                    "assignment left out topics without known partitions topics=%s",
                    ",".join(sorted(left_out)),
                )
            with self._lock:
                self._unassigned = left_out
            return result

        assignor.assign = assign_and_note

    def request(self, topics: list[str]) -> None:
        """Thread-safe: ask for topics; the event loop applies them on its next ``reconcile``."""
        with self._lock:
            self._pending.update(topics)

    def forget(self, topics: list[str]) -> None:
        """Thread-safe: stop reading topics (a dropped collection's WAL, which the GC deletes)."""
        with self._lock:
            self._unwanted.update(topics)
            self._pending.difference_update(topics)

    def reconcile(self) -> None:
        """Run on the event loop: apply requested topics, and re-ask for any not yet subscribed."""
        with self._lock:
            new = [t for t in self._pending if t not in self.channel.topics]
            self._pending.clear()
            gone = {t for t in self._unwanted if t in self.channel.topics}
            self._unwanted.clear()
        if gone:
            log.info("unsubscribing topics=%s", ",".join(sorted(gone)))
            anchor = self.channel.topics[0]  # the control topic: never a WAL topic
            for ch in list(self.app.topics):
                if ch is self.channel or anchor in getattr(ch, "topics", ()):
                    ch.topics = [t for t in ch.topics if t not in gone]
            for t in gone:
                self._unknown_asks.pop(t, None)
            if not new:
                self._ask()
                return
        if new:
            log.info("subscribing topics=%s", ",".join(sorted(new)))
            self.channel.topics = [*self.channel.topics, *new]
            # the agent's stream runs on a clone of the channel, which the conductor holds
            anchor = self.channel.topics[0]
            for ch in list(self.app.topics):
                if ch is not self.channel and anchor in getattr(ch, "topics", ()):
                    ch.topics = [*ch.topics, *[t for t in new if t not in ch.topics]]
            self._ask()
            return
        # a resubscription takes a rebalance; asking again too soon would start another one
        if self.app.rebalancing or time.monotonic() - self._asked_at < RETRY_SECONDS:
            return
        consumer = getattr(getattr(self.app.consumer, "_thread", None), "_consumer", None)
        if consumer is None:
            return
        missing = set(self.channel.topics) - set(consumer.subscription() or ())
        # subscribed, but the group was assigned before the consumer knew the topic's partitions: aiokafka
        # rejoins only on its next metadata refresh (minutes), so subscribe again, which fetches them now
        unknown = {t for t in self.channel.topics if _partitions_known(self.app, t) is False}
        for t in unknown:
            self._unknown_asks[t] = self._unknown_asks.get(t, 0) + 1
            if self._unknown_asks[t] == MAX_UNKNOWN_ASKS:  # a deleted topic must not rebalance forever
                log.warning("giving up re-subscribing a topic without partitions topic=%s", t)
        missing |= {t for t in unknown if self._unknown_asks[t] < MAX_UNKNOWN_ASKS}
        with self._lock:
            left_out = {t for t in self._unassigned if _partitions_known(self.app, t)}
            self._unassigned -= left_out
        missing |= left_out
        if missing:
            log.info("re-requesting subscription topics=%s", ",".join(sorted(missing)))
            _refresh_metadata(consumer)
            self._ask()

    def _ask(self) -> None:
        self._asked_at = time.monotonic()
        self.app.topics._flag_changes()


def _partitions_known(app: Any, topic: str) -> bool | None:
    """Whether the consumer's group metadata has the topic's partitions (None: cannot tell)."""
    try:
        return bool(app.consumer.topic_partitions(topic))  # an empty set: a topic it saw no partitions of
    except Exception:
        return None


def _refresh_metadata(consumer: Any) -> None:
    """Have the consumer's client fetch cluster metadata now (on the consumer thread's loop): after a
    broker restart it can keep a topic without partitions until its next periodic refresh, minutes away."""
    client = getattr(consumer, "_client", None)
    loop = getattr(client, "_loop", None)
    if loop is None:
        return
    try:
        loop.call_soon_threadsafe(client.force_metadata_update)
    except RuntimeError:  # the loop is closed: the consumer is being replaced
        pass
