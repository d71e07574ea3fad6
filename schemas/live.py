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
    if tomb_pks is not None and tomb_pks.null_count:  # partition tombstones: see ``dropped_by_partition``
        valid = tomb_pks.is_valid()
        tomb_pks = tomb_pks.filter(valid)
        tomb_seqs = None if tomb_seqs is None else tomb_seqs[valid.to_numpy(zero_copy_only=False)]
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


def stored_alive(rows: pa.Table, tombs: pa.Table | None, pk: str) -> np.ndarray:
    """The live rows of a stored rows table given its tombstones table: each key's latest write,
    unless a later tombstone deleted the key or dropped the row's partition."""
    alive = latest_alive(
        rows.column(pk).combine_chunks(),
        rows.column("_seq").to_numpy(),
        tombs.column("_pk").combine_chunks() if tombs is not None else None,
        tombs.column("_seq").to_numpy() if tombs is not None else None,
    )
    hidden = dropped_by_partition(rows, tombs)
    if hidden is not None:
        alive &= ~hidden
    return alive


def dropped_by_partition(rows: pa.Table, tombs: pa.Table | None) -> np.ndarray | None:
    """Rows hidden by a dropped partition, or None when nothing is.

    Dropping a partition writes a marker into every WAL shard; stored, it is a tombstone with a
    null ``_pk`` and the partition's name: every row of that partition in that shard with a lower
    ``_seq`` is gone (``_seq`` orders writes within a shard only).
    """
    if tombs is None or tombs.num_rows == 0 or rows.num_rows == 0:
        return None
    marks = tombs.filter(pc.is_null(tombs.column("_pk")))
    if marks.num_rows == 0:
        return None
    part = rows.column("_partition")
    shard = rows.column("_shard").to_numpy()
    seq = rows.column("_seq").to_numpy()
    hidden = np.zeros(rows.num_rows, dtype=bool)
    for p, s, q in zip(
        marks.column("_partition").to_pylist(),
        marks.column("_shard").to_pylist(),
        marks.column("_seq").to_pylist(),
        strict=True,
    ):  # one per dropped partition and shard: a handful
        hidden |= pc.equal(part, p).to_numpy(zero_copy_only=False) & (shard == s) & (seq < q)
    return hidden


def live_rows_sql(pk: str, rows: str = "rows", deletes: str = "deletes") -> str:
    """The rule of ``stored_alive`` in plain SQL (DuckDB, polars SQL, Spark) over a collection's two
    Delta tables, registered as ``rows`` and ``deletes``: a row is live when its ``_seq`` is the
    highest of its key's writes and key tombstones (a key always lives in one shard, where ``_seq``
    is the WAL order), and no partition tombstone (null ``_pk``) of its partition and shard came
    after it. ``pk`` is the primary key field's name. Collections with a TTL also drop rows whose
    ``_ts`` (a hybrid timestamp: milliseconds << 18) is older than the TTL.
    """
    q = f'"{pk}"'
    return f"""SELECT r.* FROM {rows} AS r
JOIN (
  SELECT pk, max(_seq) AS last_seq FROM (
    SELECT {q} AS pk, _seq FROM {rows}
    UNION ALL
    SELECT _pk AS pk, _seq FROM {deletes} WHERE _pk IS NOT NULL
  ) AS w GROUP BY pk
) AS l ON r.{q} = l.pk AND r._seq = l.last_seq
LEFT JOIN (
  SELECT _partition, _shard, max(_seq) AS dropped_seq FROM {deletes} WHERE _pk IS NULL
  GROUP BY _partition, _shard
) AS p ON r._partition = p._partition AND r._shard = p._shard
WHERE p.dropped_seq IS NULL OR r._seq > p.dropped_seq"""
