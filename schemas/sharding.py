"""Which shard (WAL topic partition) a primary key belongs to. Stable across processes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

_HASH_KEY = "walvus-shard-key"  # 16 bytes, fixed forever: changing it moves every key


def key_hashes(keys: pa.Array | np.ndarray) -> np.ndarray:
    """A stable uint64 hash per key (int64 or string keys), vectorised."""
    if isinstance(keys, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_integer(keys.type):
            keys = keys.to_numpy(zero_copy_only=False)
        else:
            keys = np.asarray(keys.to_pylist(), dtype=object)
    if keys.dtype.kind in "iu":
        return pd.util.hash_array(keys.astype(np.int64, copy=False), hash_key=_HASH_KEY[:16])
    return pd.util.hash_array(keys.astype(object, copy=False), hash_key=_HASH_KEY[:16], categorize=False)


def shard_of(keys: pa.Array | np.ndarray, num_shards: int) -> np.ndarray:
    """The shard of each key: hash modulo the number of shards."""
    if num_shards <= 1:
        return np.zeros(len(keys), dtype=np.int32)
    return (key_hashes(keys) % np.uint64(num_shards)).astype(np.int32)
