"""SipHash-2-4 (Aumasson and Bernstein), for the few string keys a process without pandas hashes.

``schemas.sharding`` hashes string keys with pandas' vectorised SipHash where pandas is loaded;
a searcher process runs without pandas and hashes here the handful of partition-key values a
filter names. Both give the same 64-bit value (``tests/unit/test_schemas_sharding.py``).
"""

from __future__ import annotations

import struct

_M = 0xFFFFFFFFFFFFFFFF


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M


def siphash24(key: bytes, data: bytes) -> int:
    """The 64-bit SipHash-2-4 of ``data`` under a 16-byte ``key``."""
    k0, k1 = struct.unpack("<QQ", key)
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(n: int) -> None:
        v0, v1, v2, v3 = v
        for _ in range(n):
            v0 = (v0 + v1) & _M
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _M
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _M
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _M
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)
        v[:] = [v0, v1, v2, v3]

    whole = len(data) // 8 * 8
    words = [*struct.unpack_from(f"<{whole // 8}Q", data), int.from_bytes(data[whole:], "little")]
    words[-1] |= (len(data) & 0xFF) << 56
    for m in words:
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]
