"""The gateway's open Flight streams to a searcher (``searcher.channel``), against a real Flight
server (``searcher.flight``) in this process over a stub service."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from schemas.exceptions import CollectionNotFound
from searcher.channel import SearcherChannel, read_answer
from searcher.flight import SearcherFlight
from searcher.wire import decode_hits, encode_query, encode_search, shards_of
from tests.ports import free_port, listening
from walvus.searcher import Hits, QueryRequest, SearchRequest


class StubService:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def served_search(self, req: SearchRequest) -> tuple[list[Hits], frozenset[int], str]:
        with self.lock:
            self.calls += 1
        if req.collection == "missing":
            raise CollectionNotFound("missing")
        if req.collection == "broken":
            raise ValueError("a bug")
        q = np.asarray(req.queries)
        hits = [
            Hits(
                [int(i * 10 + k) for k in range(req.limit)],
                np.full(req.limit, float(i), np.float32),
                pa.table({}),
            )
            for i in range(len(q))
        ]
        return hits, req.shards or frozenset({0}), "L2"

    def served_query(self, req: QueryRequest) -> tuple[pa.Table, frozenset[int]]:
        return pa.table({"id": pa.array(range(req.limit or 3), pa.int64())}), frozenset({1})


def _search(collection: str, nq: int = 2, limit: int = 3) -> bytes:
    queries = np.arange(nq * 4, dtype=np.float32).reshape(nq, 4)
    return encode_search(SearchRequest(collection, None, queries, limit, shards=frozenset({0, 1})))


@pytest.fixture
def server() -> Iterator[tuple[SearcherFlight, StubService]]:
    svc = StubService()
    srv = SearcherFlight(svc, "grpc://127.0.0.1:0")
    yield srv, svc
    srv.shutdown()


@pytest.fixture
def channel(server: tuple[SearcherFlight, StubService]) -> Iterator[SearcherChannel]:
    c = SearcherChannel(f"127.0.0.1:{server[0].port}")
    yield c
    c.close()


def test_reads_share_open_streams_and_answer_in_order(channel: SearcherChannel) -> None:
    for limit in (1, 2, 3):
        hits = decode_hits(channel.call(_search("c", nq=2, limit=limit)))
        assert [h.ids for h in hits] == [list(range(limit)), [10 + k for k in range(limit)]]
    assert len(channel._idle) == 1  # one caller at a time: one stream
    table = channel.call(encode_query(QueryRequest("c", limit=5)))
    assert table.column("id").to_pylist() == [0, 1, 2, 3, 4] and shards_of(table) == {1}
    with ThreadPoolExecutor(4) as pool:  # concurrent reads each get a stream of their own
        results = list(pool.map(lambda i: decode_hits(channel.call(_search("c", 1, 1 + i % 3))), range(40)))
    assert [len(r[0].ids) for r in results] == [1 + i % 3 for i in range(40)]
    assert 1 <= len(channel._idle) <= 4


def test_a_searcher_error_comes_back_as_the_same_error_and_the_stream_goes_on(
    channel: SearcherChannel,
) -> None:
    with pytest.raises(CollectionNotFound, match="missing"):
        channel.call(_search("missing"))
    with pytest.raises(Exception, match="a bug"):
        channel.call(_search("broken"))
    assert len(decode_hits(channel.call(_search("c")))) == 2
    assert len(channel._idle) == 1


def _serve(port: int) -> None:
    SearcherFlight(StubService(), f"grpc://127.0.0.1:{port}").serve()


def _searcher_process(port: int) -> multiprocessing.process.BaseProcess:
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    proc.start()
    deadline = time.monotonic() + 30
    while not listening(port):
        assert time.monotonic() < deadline and proc.is_alive(), "the searcher did not start"
        time.sleep(0.05)
    return proc


def test_streams_opened_before_a_searcher_restart_are_replaced() -> None:
    port = free_port()
    first = _searcher_process(port)
    channel = SearcherChannel(f"127.0.0.1:{port}")
    try:
        assert len(decode_hits(channel.call(_search("c")))) == 2
        os.kill(first.pid, signal.SIGKILL)  # a crash: its streams break
        first.join(10)
        second = _searcher_process(port)  # the same address, a new process
        try:
            assert len(decode_hits(channel.call(_search("c")))) == 2
            assert len(channel._idle) == 1
        finally:
            os.kill(second.pid, signal.SIGKILL)
            second.join(10)
        with pytest.raises((flight.FlightUnavailableError, flight.FlightCancelledError, OSError)):
            channel.call(_search("c"))  # nobody there: the read fails as unreachable
    finally:
        channel.close()


def test_idle_streams_are_closed_so_a_searcher_can_shut_down(
    server: tuple[SearcherFlight, StubService], channel: SearcherChannel
) -> None:
    srv, _ = server
    channel.call(_search("c"))
    channel.close_idle(60)
    assert len(channel._idle) == 1  # used just now
    channel.close_idle(0)
    assert channel._idle == []
    stopping = threading.Thread(target=srv.shutdown)
    stopping.start()
    stopping.join(30)
    assert not stopping.is_alive(), "the server still waits for a stream"


def test_a_message_without_a_request_is_answered_with_an_error(
    server: tuple[SearcherFlight, StubService],
) -> None:
    srv, svc = server
    client = flight.FlightClient(f"grpc://127.0.0.1:{srv.port}")
    writer, reader = client.do_exchange(flight.FlightDescriptor.for_command(b"reads"))
    table = pa.table({"x": [1]})
    writer.begin(table.schema)
    writer.write_batch(table.to_batches()[0])  # data, no app metadata: not a read
    with pytest.raises(Exception, match="app metadata"):
        read_answer(reader.read_chunk().app_metadata)
    writer.write_metadata(_search("c"))  # the stream goes on
    assert len(decode_hits(read_answer(reader.read_chunk().app_metadata))) == 2
    writer.done_writing()
    writer.close()
    client.close()
    assert svc.calls == 1
