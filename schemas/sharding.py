"""Which shard (WAL topic partition) a primary key belongs to. Stable across processes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.siphash import siphash24

_HASH_KEY = "walvus-shard-key"  # 16 bytes, fixed forever: changing it moves every key


def key_hashes(keys: pa.Array | np.ndarray) -> np.ndarray:
    """A stable uint64 hash per key (int64 or string keys), vectorised.

    Integer keys: the splitmix64 finaliser of the key's bits. String keys: SipHash-2-4 of the
    UTF-8 bytes under ``_HASH_KEY``, then the same finaliser: pandas' ``hash_array``, vectorised,
    or ``schemas.siphash`` key by key in a process without pandas (a searcher).
    """
    if isinstance(keys, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_integer(keys.type):
            keys = keys.to_numpy(zero_copy_only=False)
        else:
            keys = np.asarray(keys.to_pylist(), dtype=object)
    if keys.dtype.kind in "iu":
        return _mix(keys.astype(np.int64, copy=False).view(np.uint64).copy())
    try:
        import pandas as pd
    except ModuleNotFoundError:  # a searcher process: a filter's few partition-key values
        key = _HASH_KEY.encode()
        data = [k if isinstance(k, bytes) else str(k).encode() for k in keys.tolist()]
        return _mix(np.array([siphash24(key, d) for d in data], dtype=np.uint64))
    return pd.util.hash_array(keys.astype(object, copy=False), hash_key=_HASH_KEY[:16], categorize=False)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on uint64 (wrapping multiplication)."""
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def shard_of(keys: pa.Array | np.ndarray, num_shards: int) -> np.ndarray:
    """The shard of each key: hash modulo the number of shards."""
    if num_shards <= 1:
        return np.zeros(len(keys), dtype=np.int32)
    return (key_hashes(keys) % np.uint64(num_shards)).astype(np.int32)
