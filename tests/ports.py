"""A free TCP port on 127.0.0.1, never one this test process handed out before.

The kernel may give the same ephemeral port to two binds in a row once the first is closed, and
a deployment asks for several ports (gateway, metrics, indexer metrics) before any is in use: two
of them came out equal once, and the gateway could not bind.
"""

import socket

_given: set[int] = set()


def free_port() -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _given:
            _given.add(port)
            return port
    raise RuntimeError("no fresh free port after 100 tries")


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts connections on ``port``. A connect to a port of the ephemeral range can
    meet itself (TCP simultaneous open: the kernel picked the same port as the source) while
    nothing listens; such a connection does not count."""
    try:
        sock = socket.create_connection((host, port), timeout=1)
    except OSError:
        return False
    with sock:
        return sock.getsockname() != sock.getpeername()
