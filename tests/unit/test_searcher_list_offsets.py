"""Direct ListOffsets for Strong reads: answers, stale answers, broker errors and the fallback.

The broker here is a small fake that speaks ListOffsets v2 on a local socket; the real broker
answers the same requests in tests/integration/test_local_kafka.py and in every Strong read of
the integration suite.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from searcher.list_offsets import DirectEndPositions, decode, encode
from searcher.positions import EndPositions


class FakeBroker:
    """Answers each ListOffsets with ``offsets[partition]`` or ``errors[partition]``."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}
        self.errors: dict[int, int] = {}
        self.requests = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()[:2]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while True:
                head = conn.recv(4, socket.MSG_WAITALL)
                if len(head) < 4:
                    return
                frame = conn.recv(struct.unpack(">i", head)[0], socket.MSG_WAITALL)
                self.requests += 1
                conn.sendall(self._answer(frame))

    def _answer(self, frame: bytes) -> bytes:
        key, version, correlation, cid_len = struct.unpack_from(">hhih", frame)
        assert (key, version) == (2, 2)
        pos = 10 + cid_len
        replica, isolation, topics, name_len = struct.unpack_from(">ibih", frame, pos)
        assert (replica, isolation, topics) == (-1, 1, 1)
        name = frame[pos + 11 : pos + 11 + name_len]
        (count,) = struct.unpack_from(">i", frame, pos + 11 + name_len)
        parts = [struct.unpack_from(">iq", frame, pos + 15 + name_len + 12 * i)[0] for i in range(count)]
        body = struct.pack(">iih", correlation, 0, 1)[:8] + struct.pack(">i", 1)
        body += struct.pack(">h", len(name)) + name + struct.pack(">i", len(parts))
        for p in parts:
            body += struct.pack(">ihqq", p, self.errors.get(p, 0), -1, self.offsets.get(p, -1))
        return struct.pack(">i", len(body)) + body

    def close(self) -> None:
        self.server.close()


@pytest.fixture()
def broker() -> Iterator[FakeBroker]:
    b = FakeBroker()
    yield b
    b.close()


def _direct(leaders: dict, fallback_answer: int = 99) -> tuple[DirectEndPositions, list[str]]:
    asked: list[str] = []
    fallback = EndPositions(lambda t, n: asked.append(t) or [fallback_answer] * n)
    return DirectEndPositions(lambda topic: dict(leaders), fallback), asked


def test_encode_decode_round_trip_shape():
    frame = encode(7, "wal", [0, 1])
    assert struct.unpack_from(">ihhi", frame) == (len(frame) - 4, 2, 2, 7)
    answer = struct.pack(">ii", 7, 0) + struct.pack(">ih", 1, 3) + b"wal" + struct.pack(">i", 2)
    answer += struct.pack(">ihqq", 0, 0, -1, 5) + struct.pack(">ihqq", 1, 0, -1, 8)
    assert decode(answer) == (7, {0: 5, 1: 8})
    broken = answer[:-22] + struct.pack(">ihqq", 1, 6, -1, -1)  # NOT_LEADER_OR_FOLLOWER
    with pytest.raises(ValueError, match="error code 6"):
        decode(broken)


def test_answers_come_from_the_broker_and_are_remembered(broker):
    broker.offsets = {0: 11, 1: 4}
    ep, asked = _direct({0: broker.address, 1: broker.address})
    assert ep.last_known("wal") is None
    pending = ep.request("wal", 2)
    assert pending.result() == [11, 4]
    broker.offsets = {0: 12, 1: 4}
    assert pending.result() == [11, 4]  # read once
    assert ep.after_now("wal", 2) == [12, 4]
    assert ep.last_known("wal") == [12, 4]
    assert broker.requests == 2 and not asked


def test_an_answer_nobody_read_is_skipped(broker):
    broker.offsets = {0: 1}
    ep, asked = _direct({0: broker.address})
    ep.request("wal", 1)  # e.g. the search raised before the barrier was read
    broker.offsets = {0: 2}
    assert ep.after_now("wal", 1) == [2]
    assert not asked


def test_partitions_on_two_leaders_are_asked_of_each(broker):
    other = FakeBroker()
    try:
        broker.offsets, other.offsets = {0: 3, 2: 5}, {1: 4}
        ep, asked = _direct({0: broker.address, 1: other.address, 2: broker.address})
        assert ep.after_now("wal", 3) == [3, 4, 5]
        assert (broker.requests, other.requests, asked) == (1, 1, [])
    finally:
        other.close()


def test_a_broker_error_falls_back_then_pauses_the_direct_path(broker):
    broker.offsets, broker.errors = {0: 1}, {0: 6}
    ep, asked = _direct({0: broker.address})
    assert ep.after_now("wal", 1) == [99]
    assert asked == ["wal"] and ep.fallbacks == 1
    broker.errors = {}
    assert ep.after_now("wal", 1) == [99]  # paused: librdkafka answers for a few seconds
    assert broker.requests == 1
    assert ep.after_now("other", 1) == [1]  # only for that topic


def test_unknown_leader_or_unreachable_broker_falls_back():
    closed = socket.create_server(("127.0.0.1", 0))
    address = closed.getsockname()[:2]
    closed.close()
    ep, asked = _direct({0: address})
    assert ep.after_now("wal", 1) == [99]
    ep2, asked2 = _direct({})  # the topic has no leader yet
    assert ep2.after_now("wal", 1) == [99]
    assert asked == asked2 == ["wal"]


def test_a_connection_idle_for_long_is_replaced_not_failed(broker, monkeypatch):
    broker.offsets = {0: 1}
    ep, asked = _direct({0: broker.address})
    assert ep.after_now("wal", 1) == [1]
    first = ep._sockets()[broker.address]
    first.shutdown(socket.SHUT_RDWR)  # as a broker does to a connection idle past its limit
    clock = time.monotonic() + 3600
    monkeypatch.setattr("searcher.list_offsets.time.monotonic", lambda: clock)
    assert ep.after_now("wal", 1) == [1]
    assert ep._sockets()[broker.address] is not first
    assert ep.fallbacks == 0 and not asked
