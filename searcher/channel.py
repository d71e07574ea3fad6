"""A gateway's link to one searcher: long-lived Arrow Flight ``DoExchange`` streams.

A ``DoGet`` per read opens a new gRPC stream and sends a schema, a batch and an end of stream;
on this machine that made one nq=1 read cost about twice a message on a stream already open.
So reads travel as Flight app-metadata messages on streams kept open: the request is the
``searcher.wire`` ticket, the answer is one byte (``A`` answer, ``E`` error) followed by the
Arrow IPC stream of the result table, or by the error ``searcher.wire`` encodes. A stream
carries one read at a time; a channel keeps the idle ones, so concurrent reads each get their own.
A stream idle for a while is closed: a searcher shutting down waits for its open streams to end.
"""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pyarrow.flight as flight

from schemas.exceptions import WalvusError
from searcher.wire import decode_error, encode_error

ANSWER, ERROR = b"A", b"E"
READS = flight.FlightDescriptor.for_command(b"reads")
_BROKEN = (flight.FlightUnavailableError, flight.FlightCancelledError, flight.FlightInternalError, OSError)


def answer_message(table: pa.Table) -> pa.Buffer:
    """``A`` + the IPC stream of ``table`` (its schema metadata included), written once."""
    sink = pa.BufferOutputStream()
    sink.write(ANSWER)
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def error_message(exc: Exception) -> bytes:
    return ERROR + encode_error(exc).encode()


def read_answer(message: pa.Buffer) -> pa.Table:
    """The table of an answer; the searcher's error, raised here, for an error."""
    tag = message[0:1].to_pybytes()
    if tag == ANSWER:
        return pa.ipc.open_stream(message.slice(1)).read_all()
    text = message.slice(1).to_pybytes().decode()
    raise decode_error(text) or WalvusError(f"searcher failed: {text}")


class _Stream:
    def __init__(self, client: flight.FlightClient) -> None:
        self.writer, self.reader = client.do_exchange(READS)
        self.used = time.monotonic()

    def call(self, ticket: bytes) -> pa.Table:
        self.writer.write_metadata(ticket)
        message = self.reader.read_chunk().app_metadata
        if message is None:
            raise flight.FlightInternalError("searcher answered without a message")
        return read_answer(message)

    def close(self) -> None:
        try:
            self.writer.done_writing()
            self.writer.close()
        except (flight.FlightError, OSError):
            pass


class SearcherChannel:
    """Reads sent to one searcher ``address`` over a few open streams."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.client = flight.FlightClient(f"grpc://{address}")
        self._idle: list[_Stream] = []
        self._lock = threading.Lock()

    def call(self, ticket: bytes) -> pa.Table:
        """The searcher's answer to ``ticket``. A stream found broken was opened before the searcher
        last restarted: the idle ones go too, and the read is sent once more on a fresh stream."""
        with self._lock:
            stream = self._idle.pop() if self._idle else None
        reused = stream is not None
        try:
            if stream is None:
                stream = _Stream(self.client)
            return self._on(stream, ticket)
        except _BROKEN:
            if not reused:
                raise
        self._drop_idle()
        return self._on(_Stream(self.client), ticket)

    def _on(self, stream: _Stream, ticket: bytes) -> pa.Table:
        try:
            table = stream.call(ticket)
        except (WalvusError, TimeoutError):  # the searcher answered: the stream is fine
            self._give(stream)
            raise
        except BaseException:
            stream.close()
            raise
        self._give(stream)
        return table

    def _give(self, stream: _Stream) -> None:
        stream.used = time.monotonic()
        with self._lock:
            self._idle.append(stream)

    def close_idle(self, older_than: float) -> None:
        """Close the streams nobody used for ``older_than`` seconds."""
        cutoff = time.monotonic() - older_than
        with self._lock:
            old = [s for s in self._idle if s.used <= cutoff]
            self._idle = [s for s in self._idle if s.used > cutoff]
        for s in old:
            s.close()

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for s in idle:
            s.close()

    def close(self) -> None:
        self._drop_idle()
        self.client.close()


__all__ = ["SearcherChannel", "answer_message", "error_message", "read_answer"]
