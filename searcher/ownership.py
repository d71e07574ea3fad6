"""Which shards this searcher holds: Kafka's consumer-group protocol decides.

Every ``walvus searcher`` of a replica group joins one consumer group, ``<ns>.searchers.<group>``,
subscribed to the WAL topics of the loaded collections (a WAL partition is a shard). Kafka's
group coordinator assigns each partition to one member, and moves partitions when a member joins,
leaves or stops heartbeating (``session.timeout.ms``). The member never reads records: it pauses
what it is given, and the searcher's own WAL tail reads the shards from the positions their sealed
segments end at. Its ``client.id`` carries the address this searcher serves on, so a gateway
learns who holds what from the group's description alone (``searcher.directory``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from schemas.topics import presence_group
from walvus.exceptions import LogUnavailable
from walvus.log_tail import GroupMember, Partition

log = logging.getLogger(__name__)
CLIENT_PREFIX = "walvus-searcher@"  # then host:port
Assignment = dict[str, frozenset[int]]  # WAL topic -> partitions (shards)


def client_id(address: str) -> str:
    return CLIENT_PREFIX + address


def address_of(client: str) -> str | None:
    return client[len(CLIENT_PREFIX) :] if client.startswith(CLIENT_PREFIX) else None


class ShardOwnership:
    """A group member that only holds assignments; ``on_change`` gets the whole assignment each
    time it changes (on the member's thread)."""

    def __init__(
        self,
        conf: dict,
        group: str,
        address: str,
        on_change: Callable[[Assignment], None],
        session_timeout_ms: int = 6000,
        presence_topic: str | None = None,
    ) -> None:
        heartbeat_ms = max(500, session_timeout_ms // 6)
        self._member = GroupMember(
            conf,
            group=group,
            client_id=client_id(address),
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_ms,
            cooperative=True,  # moves only what must move
            metadata_refresh_ms=1000,
            on_change=self._held,
        )
        self.group = group
        self._on_change = on_change
        # a second member, in ``<group>.presence`` on a one-partition topic, so gateways see this
        # searcher (and its replica group) before any collection is loaded; a group of its own,
        # because partitions are balanced over all the topics of a group
        self._presence: GroupMember | None = None
        if presence_topic:
            self._presence = GroupMember(
                conf,
                group=presence_group(group),
                client_id=client_id(address),
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=heartbeat_ms,
            )
            self._presence.subscribe([presence_topic])
        self._topics: frozenset[str] = frozenset()
        self._wanted: frozenset[str] = frozenset()
        self._assignment: Assignment = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shard-ownership", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Leave the group at once (the shards move to the other members now, not after the
        session timeout)."""
        self._stop.set()
        self._thread.join(10)

    def follow(self, topics: Iterable[str]) -> None:
        """Subscribe to these WAL topics (the loaded collections'), from the member's thread."""
        with self._lock:
            self._wanted = frozenset(topics)

    def assignment(self) -> Assignment:
        with self._lock:
            return dict(self._assignment)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    wanted = self._wanted
                if wanted != self._topics:
                    self._resubscribe(wanted)
                if self._presence is not None:
                    self._presence.serve(0 if self._topics else 0.1)
                if not self._topics:
                    self._stop.wait(0.05)
                    continue
                try:
                    self._member.serve(0.2)  # the group protocol; partitions are paused
                except LogUnavailable as exc:
                    log.warning("searcher group poll failed group=%s error=%s", self.group, exc)
        finally:
            self._member.close()  # leaves the group: its shards are reassigned at once
            if self._presence is not None:
                self._presence.close()

    def _resubscribe(self, topics: frozenset[str]) -> None:
        self._topics = topics
        if topics:
            self._member.subscribe(topics)
        else:
            self._member.unsubscribe()
            self._publish({})

    def _held(self, partitions: frozenset[Partition]) -> None:
        held: dict[str, set[int]] = {}
        for topic, p in partitions:
            held.setdefault(topic, set()).add(p)
        self._publish({t: frozenset(p) for t, p in held.items()})

    def _publish(self, assignment: Assignment) -> None:
        with self._lock:
            if assignment == self._assignment:
                return
            self._assignment = assignment
        log.info(
            "searcher shards assigned group=%s shards=%s",
            self.group,
            {t: sorted(p) for t, p in assignment.items()},
        )
        try:
            self._on_change(assignment)
        except Exception:
            log.exception("applying a shard assignment failed group=%s", self.group)


__all__ = ["Assignment", "ShardOwnership", "address_of", "client_id"]
