"""Who holds which shard, as a gateway learns it: from the searchers' consumer groups.

Kafka's group coordinator knows every ``walvus searcher`` (a member of ``<ns>.searchers.<group>``),
the address it serves on (its ``client.id``) and the WAL partitions (shards) it is assigned. The
directory asks for the groups' descriptions about once a second, and again at once when a read
finds a searcher gone or a shard not held where the description said.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from schemas.topics import presence_group, searcher_groups_prefix
from searcher.ownership import address_of

PRESENCE = presence_group("")

log = logging.getLogger(__name__)
REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class Owner:
    replica_group: int
    address: str


@dataclass
class Layout:
    """One description of every searcher group."""

    owners: dict[str, dict[int, list[Owner]]] = field(default_factory=dict)  # topic -> shard -> owners
    members: dict[int, list[str]] = field(default_factory=dict)  # replica group -> addresses

    def owners_of(self, topic: str, shard: int) -> list[Owner]:
        return self.owners.get(topic, {}).get(shard, [])

    @property
    def addresses(self) -> list[str]:
        return sorted({a for addrs in self.members.values() for a in addrs})


class SearcherDirectory:
    def __init__(self, conf: dict, namespace: str) -> None:
        self._admin = AdminClient({k: v for k, v in conf.items() if not k.startswith("enable.")})
        self._prefix = searcher_groups_prefix(namespace)
        self._layout = Layout()
        self._cond = threading.Condition()
        self._generation = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="searcher-directory", daemon=True)
        self._thread.start()

    def layout(self) -> Layout:
        with self._cond:
            return self._layout

    def refresh(self, timeout: float = 5.0) -> Layout:
        """A description newer than this call (or the current one after ``timeout``)."""
        with self._cond:
            wanted = self._generation + 1
            self._wake.set()
            self._cond.wait_for(lambda: self._generation > wanted, timeout)
            return self._layout

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                layout = self._describe()
            except (KafkaException, TimeoutError, RuntimeError) as exc:
                log.warning("describing searcher groups failed error=%s", exc)
                layout = None
            with self._cond:
                if layout is not None:
                    self._layout = layout
                self._generation += 1
                self._cond.notify_all()
            self._wake.wait(REFRESH_SECONDS)
            self._wake.clear()

    def _describe(self) -> Layout:
        listed = self._admin.list_consumer_groups(request_timeout=5).result()
        ids = sorted(g.group_id for g in listed.valid if g.group_id.startswith(self._prefix))
        layout = Layout()
        if not ids:
            return layout
        for gid, fut in self._admin.describe_consumer_groups(ids, request_timeout=5).items():
            name = gid[len(self._prefix) :]
            presence = name.endswith(PRESENCE)
            try:
                desc = fut.result()
                rg = int(name.removesuffix(PRESENCE))
            except (KafkaException, ValueError) as exc:
                log.warning("describing searcher group failed group=%s error=%s", gid, exc)
                continue
            for m in desc.members:
                address = address_of(m.client_id)
                if address is None:
                    continue
                if presence:  # every running searcher, loaded collections or not
                    layout.members.setdefault(rg, []).append(address)
                    continue
                for tp in m.assignment.topic_partitions:
                    layout.owners.setdefault(tp.topic, {}).setdefault(tp.partition, []).append(
                        Owner(rg, address)
                    )
        return layout


class DownList:
    """Searchers that failed a call recently: tried last until ``seconds`` pass."""

    def __init__(self, seconds: float = 10.0) -> None:
        self.seconds = seconds
        self._down: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, address: str) -> None:
        with self._lock:
            self._down[address] = time.monotonic()

    def clear(self, address: str) -> None:
        with self._lock:
            self._down.pop(address, None)

    def is_down(self, address: str) -> bool:
        with self._lock:
            at = self._down.get(address)
            return at is not None and time.monotonic() - at < self.seconds


__all__ = ["DownList", "Layout", "Owner", "SearcherDirectory"]
