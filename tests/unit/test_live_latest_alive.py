"""Which stored rows are live: ``latest_alive`` (and ``live_rows`` over real Delta tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from schemas.catalog import CollectionInfo
from schemas.collection import CollectionSchema, FieldSchema, validate_schema
from schemas.live import latest_alive
from schemas.stored_rows import SEQ_SHIFT
from schemas.types import DataType as D
from schemas.validation import build_batch, rows_to_columns
from schemas.wal import Op, WalHeader, WalRecord
from streams.growing import BufferedRecord
from streams.segment_writer import SegmentWriter
from walvus.storage import SegmentStore


def alive(
    pks: list,
    seqs: list[int],
    tpks: list | None = None,
    tseqs: list[int] | None = None,
    pk_type: pa.DataType | None = None,
) -> list[bool]:
    keys = pa.array(pks, type=pk_type)
    tombs = None if tpks is None else pa.array(tpks, type=keys.type)
    out = latest_alive(
        keys,
        np.array(seqs, dtype=np.int64),
        tombs,
        None if tseqs is None else np.array(tseqs, dtype=np.int64),
    )
    assert out.dtype == bool and len(out) == len(pks)
    return out.tolist()


def test_searcher_reexports_the_same_function() -> None:
    from searcher.segment import latest_alive as from_searcher

    assert from_searcher is latest_alive


def test_empty() -> None:
    assert alive([], [], pk_type=pa.int64()) == []
    assert alive([], [], [1], [5], pk_type=pa.int64()) == []


def test_unique_keys_are_all_alive() -> None:
    assert alive([1, 2, 3], [10, 11, 12]) == [True, True, True]
    assert alive([1, 2, 3], [10, 11, 12], [], []) == [True, True, True]


def test_latest_write_wins_per_key_whatever_the_row_order() -> None:
    # rows not sorted by seq: the highest seq of each key wins, not the last row
    assert alive([7, 7, 8, 7, 8], [30, 10, 5, 20, 50]) == [True, False, False, False, True]


def test_tombstone_hides_older_versions_only() -> None:
    assert alive([1, 1, 2], [10, 20, 30], [1], [25]) == [False, False, True]
    assert alive([1, 2], [10, 30], [2], [20]) == [True, True]  # a delete before the write hides nothing


def test_write_after_a_tombstone_is_alive_again() -> None:
    assert alive([5, 5, 5], [10, 30, 50], [5, 5], [20, 40]) == [False, False, True]
    assert alive([5, 5], [10, 30], [5, 5], [20, 40]) == [False, False]


def test_tombstones_for_unknown_keys_are_harmless() -> None:
    assert alive([1, 2], [1, 2], [3, 4, 4], [9, 9, 10]) == [True, True]


def test_string_keys() -> None:
    pks = ["a", "b", "a", "", "ü", "b"]
    seqs = [1, 2, 3, 4, 5, 6]
    assert alive(pks, seqs) == [False, False, True, True, True, True]
    assert alive(pks, seqs, ["b", ""], [7, 3]) == [False, False, True, True, True, False]


def test_tombstone_keys_are_cast_to_the_row_key_type() -> None:
    keys = pa.array(["x", "y"], pa.large_string())
    out = latest_alive(keys, np.array([1, 2]), pa.array(["x"], pa.string()), np.array([5]))
    assert out.tolist() == [False, True]
    out = latest_alive(
        pa.array([1, 2], pa.int64()), np.array([1, 2]), pa.array([2], pa.int32()), np.array([3])
    )
    assert out.tolist() == [True, False]


def test_real_seqs_order_offsets_then_rows() -> None:
    # _seq = offset << 24 | row: row 1 of offset 3 is later than row 0 of offset 3, earlier than offset 4
    s = lambda off, i: (off << SEQ_SHIFT) | i  # noqa: E731
    assert alive([9, 9, 9], [s(3, 1), s(3, 0), s(2, 5000)]) == [True, False, False]
    assert alive([9], [s(3, 1)], [9], [s(4, 0)]) == [False]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_reference_model(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 400, 150
    seqs = rng.permutation(n + m)
    pks = rng.integers(0, 60, n).tolist()
    tpks = rng.integers(0, 60, m).tolist()
    rseq, tseq = seqs[:n].tolist(), seqs[n:].tolist()
    latest: dict[int, tuple[int, bool]] = {}  # key -> (seq, is_row)
    for k, q in zip(pks + tpks, rseq + tseq, strict=True):
        if k not in latest or q > latest[k][0]:
            latest[k] = (q, False)
    for k, q in zip(pks, rseq, strict=True):
        if latest[k][0] == q:
            latest[k] = (q, True)
    expected = [latest[k] == (q, True) for k, q in zip(pks, rseq, strict=True)]
    assert alive(pks, rseq, tpks, tseq) == expected


# ---------------------------------------------------------------------------- over Delta

SCHEMA = validate_schema(
    CollectionSchema(
        fields=(
            FieldSchema("pk", D.VARCHAR, is_primary=True, max_length=8),
            FieldSchema("v", D.FLOAT_VECTOR, dim=2),
        )
    )
)


def test_live_rows_over_committed_segments(tmp_path: Path) -> None:
    from streams.live import live_rows

    info = CollectionInfo("c", 3, SCHEMA)
    store = SegmentStore(str(tmp_path))
    assert live_rows(store, info).num_rows == 0  # nothing committed yet

    def rec(op: Op, offset: int, keys: list[str]) -> BufferedRecord:
        h = WalHeader(op=op, collection="c", collection_id=3, schema_version=1, ts=offset)
        if op == Op.DELETE:
            batch = pa.record_batch({"pk": pa.array(keys)})
        else:
            rows = [{"pk": k, "v": [float(offset), 0.0]} for k in keys]
            batch = build_batch(SCHEMA, rows_to_columns(SCHEMA, rows), op=str(op))
        return BufferedRecord(offset, WalRecord.decode(WalRecord(h, batch).encode()))

    writer = SegmentWriter(store, lambda cid: info)
    writer.commit(3, 0, [rec(Op.INSERT, 0, ["a", "b", "c"]), rec(Op.UPSERT, 1, ["b"])])
    assert sorted(live_rows(store, info).column("pk").to_pylist()) == ["a", "b", "c"]  # no deletes table yet
    writer.commit(
        3,
        0,
        [
            rec(Op.DELETE, 2, ["a", "zz"]),
            rec(Op.INSERT, 3, ["d"]),
            rec(Op.DELETE, 4, ["c"]),
            rec(Op.UPSERT, 5, ["c"]),
        ],
    )
    live = live_rows(store, info).sort_by("pk")
    assert live.column("pk").to_pylist() == ["b", "c", "d"]
    assert live.column("_offset").to_pylist() == [1, 5, 3]  # the latest version of each key


def test_partition_tombstones_hide_earlier_rows_of_their_partition_and_shard_only():
    from schemas.live import dropped_by_partition

    rows = pa.table(
        {
            "_partition": ["p", "p", "q", "p", "p"],
            "_shard": pa.array([0, 0, 0, 1, 0], pa.int32()),
            "_seq": pa.array([1, 5, 2, 3, 9], pa.int64()),
        }
    )
    tombs = pa.table(
        {
            "_pk": pa.array([None, 7], pa.int64()),
            "_partition": ["p", ""],
            "_shard": pa.array([0, 0], pa.int32()),
            "_seq": pa.array([6, 6], pa.int64()),
        }
    )
    hidden = dropped_by_partition(rows, tombs)
    # p in shard 0 before seq 6: hidden; q, shard 1 (other seq space) and the later p row stay
    assert hidden.tolist() == [True, True, False, False, False]
    assert dropped_by_partition(rows, tombs.slice(1)) is None  # key tombstones only
    # latest_alive ignores the null-key tombstone
    alive = latest_alive(
        pa.array([1, 2]), np.array([1, 2]), tombs.column("_pk").combine_chunks(), np.array([6, 6])
    )
    assert alive.tolist() == [True, True]
