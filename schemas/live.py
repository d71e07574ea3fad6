"""Which stored rows are live: the latest write of each key wins, and a later delete hides it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def latest_alive(
    pks: pa.Array, seqs: np.ndarray, tomb_pks: pa.Array | None, tomb_seqs: np.ndarray | None
) -> np.ndarray:
    """For rows (pks, seqs) plus tombstones: True where the row is its key's latest write.

    Vectorised: sort all writes by (key, seq) and keep the last of each key.
    """
    n = len(pks)
    if n == 0:
        return np.zeros(0, dtype=bool)
    keys = pks if tomb_pks is None or len(tomb_pks) == 0 else pa.concat_arrays([pks, tomb_pks.cast(pks.type)])
    all_seqs = seqs if tomb_seqs is None or len(tomb_seqs) == 0 else np.concatenate([seqs, tomb_seqs])
    t = pa.table({"k": keys, "s": pa.array(all_seqs), "i": pa.array(np.arange(len(keys), dtype=np.int64))})
    t = t.sort_by([("k", "ascending"), ("s", "ascending")])
    k = t.column("k").combine_chunks()
    last = np.ones(len(k), dtype=bool)
    if len(k) > 1:
        same_next = pc.equal(k.slice(0, len(k) - 1), k.slice(1)).to_numpy(zero_copy_only=False)
        last[:-1] = ~same_next
    idx = t.column("i").to_numpy()[last]
    alive = np.zeros(len(keys), dtype=bool)
    alive[idx] = True
    return alive[:n]
