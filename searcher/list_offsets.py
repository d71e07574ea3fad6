"""Where the WAL ends, asked by the reading thread itself on its own broker connection.

A Strong read needs the log's end positions as of a moment after it arrived. Here the
request thread sends Kafka's ListOffsets (read_committed: the last stable offset) straight
to each partition's leader, runs its search while the answer travels, and then reads the
answer: one send and one receive, with no hand-off to another thread and none inside
librdkafka, so the barrier costs one loopback round trip.

Used on plaintext connections; anything unexpected (an error code, a moved leader, a closed
socket) falls back to ``EndPositions``, which asks through librdkafka.
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

from searcher.positions import EndPositions, Pending

log = logging.getLogger(__name__)
API_LIST_OFFSETS, VERSION = 2, 2  # v2: the first with isolation_level (Kafka 0.11 on)
READ_COMMITTED, LATEST = 1, -1
CLIENT_ID = b"walvus-searcher"
_HEAD = struct.Struct(">ihhih")  # size, api key, version, correlation id, client id length
_PART = struct.Struct(">iq")  # partition, timestamp
_ANSWER = struct.Struct(">ihqq")  # partition, error code, timestamp, offset
TIMEOUT = 10.0
PAUSE_AFTER_FAILURE = 5.0  # seconds a topic is asked through librdkafka after a failed direct lookup
IDLE_RECONNECT = 60.0  # a connection unused this long is replaced (Kafka drops idle ones after 10 min)
Broker = tuple[str, int]


def encode(correlation: int, topic: str, partitions: list[int]) -> bytes:
    name = topic.encode()
    body = struct.pack(">ibih", -1, READ_COMMITTED, 1, len(name)) + name + struct.pack(">i", len(partitions))
    body += b"".join(_PART.pack(p, LATEST) for p in partitions)
    size = _HEAD.size - 4 + len(CLIENT_ID) + len(body)
    return _HEAD.pack(size, API_LIST_OFFSETS, VERSION, correlation, len(CLIENT_ID)) + CLIENT_ID + body


def decode(frame: bytes) -> tuple[int, dict[int, int]]:
    """(correlation id, offsets by partition) of a ListOffsets v2 response; ``ValueError`` on errors."""
    correlation, _throttle, topics = struct.unpack_from(">iii", frame)
    if topics != 1:
        raise ValueError(f"ListOffsets answered for {topics} topics, not 1")
    (name_len,) = struct.unpack_from(">h", frame, 12)
    pos = 14 + name_len
    (count,) = struct.unpack_from(">i", frame, pos)
    out = {}
    for i in range(count):
        partition, error, _ts, offset = _ANSWER.unpack_from(frame, pos + 4 + i * _ANSWER.size)
        if error:
            raise ValueError(f"ListOffsets error code {error} on partition {partition}")
        out[partition] = offset
    return correlation, out


def _frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", _exactly(sock, 4))
    return _exactly(sock, size)


def _exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buf += chunk
    return bytes(buf)


class DirectEndPositions:
    """``EndPositions``' interface; each lookup runs on the calling thread's own connections."""

    def __init__(self, leaders: Callable[[str], dict[int, Broker]], fallback: EndPositions) -> None:
        self._leaders_of = leaders
        self._fallback = fallback
        self._leaders: dict[str, dict[int, Broker]] = {}
        # per thread, by its id: a thread gRPC or Flight made gets a fresh ``threading.local`` on
        # each call into Python, which would open a connection per request
        self._by_thread: dict[int, tuple[dict[Broker, socket.socket], dict[Broker, float]]] = {}
        self._ids = itertools.count(1)
        self._latest: dict[str, list[int]] = {}
        self._paused_until: dict[str, float] = {}  # by topic
        self.fallbacks = 0

    def request(self, topic: str, partitions: int) -> Pending | _Direct:
        """Send the lookup now; ``result()`` reads the answer."""
        if time.monotonic() < self._paused_until.get(topic, 0.0):
            return self._fallback.request(topic, partitions)
        try:
            sent = []
            for broker, parts in self._route(topic, partitions).items():
                sock = self._socket(broker)
                correlation = next(self._ids) & 0x7FFFFFFF
                sock.sendall(encode(correlation, topic, parts))
                sent.append((sock, correlation))
        except (OSError, ValueError) as exc:
            self._reset(topic, exc)
            return self._fallback.request(topic, partitions)
        return _Direct(self, topic, partitions, sent)

    def after_now(self, topic: str, partitions: int) -> list[int]:
        return self.request(topic, partitions).result()

    def last_known(self, topic: str) -> list[int] | None:
        latest = self._latest.get(topic)
        return list(latest) if latest is not None else self._fallback.last_known(topic)

    def _route(self, topic: str, partitions: int) -> dict[Broker, list[int]]:
        leaders = self._leaders.get(topic)
        if leaders is None or len(leaders) < partitions:
            leaders = self._leaders[topic] = self._leaders_of(topic)
        by_broker: dict[Broker, list[int]] = {}
        for p in range(partitions):
            if p not in leaders:
                raise ValueError(f"no leader known for {topic} partition {p}")
            by_broker.setdefault(leaders[p], []).append(p)
        return by_broker

    def _socket(self, broker: Broker) -> socket.socket:
        socks, used = self._mine()
        sock = socks.get(broker)
        now = time.monotonic()
        if sock is not None and now - used.get(broker, now) > IDLE_RECONNECT:
            sock.close()  # the broker may have closed it (connections.max.idle.ms): start afresh
            sock = None
        if sock is None:
            sock = socks[broker] = socket.create_connection(broker, timeout=TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        used[broker] = now
        return sock

    def _mine(self) -> tuple[dict[Broker, socket.socket], dict[Broker, float]]:
        me = threading.get_ident()
        mine = self._by_thread.get(me)
        if mine is None:
            mine = self._by_thread[me] = ({}, {})
        return mine

    def _sockets(self) -> dict[Broker, socket.socket]:
        return self._mine()[0]

    def _reset(self, topic: str, exc: Exception) -> None:
        """Forget the leaders and this thread's connections (a half-read answer must not linger)."""
        log.warning("ListOffsets for %s failed (%s): asking through librdkafka for a while", topic, exc)
        self.fallbacks += 1
        self._paused_until[topic] = time.monotonic() + PAUSE_AFTER_FAILURE
        self._leaders.pop(topic, None)
        socks = self._sockets()
        for sock in socks.values():
            sock.close()
        socks.clear()

    def _collect(self, topic: str, partitions: int, sent: list[tuple[socket.socket, int]]) -> list[int]:
        ends: dict[int, int] = {}
        try:
            for sock, correlation in sent:
                got, offsets = decode(_frame(sock))
                while got < correlation:  # the answer to a request whose reader gave up (an error)
                    got, offsets = decode(_frame(sock))
                if got != correlation:
                    raise ValueError(f"answer {got} while waiting for {correlation}")
                ends.update(offsets)
            result = [ends[p] for p in range(partitions)]
        except (OSError, ValueError, KeyError, struct.error) as exc:
            self._reset(topic, exc)
            return self._fallback.after_now(topic, partitions)
        self._latest[topic] = result
        return result


class _Direct:
    def __init__(
        self, owner: DirectEndPositions, topic: str, partitions: int, sent: list[tuple[socket.socket, int]]
    ) -> None:
        self._owner, self._topic, self._partitions, self._sent = owner, topic, partitions, sent
        self._ends: list[int] | None = None

    def result(self) -> list[int]:
        if self._ends is None:
            self._ends = self._owner._collect(self._topic, self._partitions, self._sent)
        return list(self._ends)
