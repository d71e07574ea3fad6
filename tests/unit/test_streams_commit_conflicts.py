"""Concurrent seals committing into one collection's Delta tables: conflicts are retried, exactly once.

Real Delta tables in tmp_path, no Kafka. ``seal_all`` commits shards in parallel threads; a
barrier in front of the store makes those commits start together, and an added field makes
each of them change the table's metadata, which is how "Metadata changed since last commit"
happened in production.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from schemas.catalog import CatalogEvent
from schemas.collection import FieldSchema
from schemas.types import DataType as D
from schemas.wal import Op
from streams.segment_writer import CommitRetry, SegmentWriter
from tests.unit.test_streams_segment_writer import CID, TOPIC, Env, assert_unique_seqs, data, ins
from walvus.exceptions import CommitConflict
from walvus.storage import DELETES, ROWS

SHARDS = 4


class Together:
    """Wraps ``store.append``: the parallel commits start at once, and conflicts are counted."""

    def __init__(self, append: Any, parties: int) -> None:
        self.append = append
        self.barrier = threading.Barrier(parties, timeout=30)
        self.conflicts = 0
        self._lock = threading.Lock()
        self._tried: set[tuple[int, int]] = set()

    def __call__(self, cid: int, kind: str, *args: Any, **kwargs: Any) -> int:
        first_try = (kwargs["shard"], kwargs["last_offset"])
        with self._lock:
            waits = kind == ROWS and first_try not in self._tried
            self._tried.add(first_try)
        if waits:  # retries run alone
            self.barrier.wait()
        try:
            return self.append(cid, kind, *args, **kwargs)
        except CommitConflict:
            with self._lock:
                self.conflicts += 1
            raise


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path / "segments")
    e.info = e.info.evolve(CatalogEvent.CREATE_COLLECTION, shards_num=SHARDS)
    return e


def test_parallel_seals_into_one_table_retry_conflicts_and_write_everything_once(env: Env) -> None:
    together = Together(env.store.append, SHARDS)
    env.store.append = together  # type: ignore[method-assign]
    shards = [(TOPIC, s) for s in range(SHARDS)]
    expected: list[int] = []
    for round_ in range(3):
        if round_ == 1:  # every shard's next commit merges the new column into the table's schema
            old = env.info
            env.info = old.evolve(
                CatalogEvent.ADD_FIELD, schema=old.schema.with_field(FieldSchema("x", D.INT32, nullable=True))
            )
        for s in range(SHARDS):
            ids = [round_ * 1000 + s * 100 + i for i in range(5)]
            raw = (
                ins(round_, ids) if round_ == 0 else data(Op.INSERT, round_, ids, schema=env.info.schema, x=s)
            )
            env.mat.add(TOPIC, s, round_, raw, token=f"t{s}-{round_}")
            expected += ids
        tokens = env.mat.seal_all(shards)
        assert sorted(tokens) == sorted(f"t{s}-{round_}" for s in range(SHARDS))
    assert together.conflicts > 0, "the parallel commits did not conflict: the test proves nothing"
    rows = env.rows()
    assert sorted(rows.column("id").to_pylist()) == sorted(expected)
    assert_unique_seqs(rows)
    assert pc.sum(pc.is_null(rows.column("x"))).as_py() == SHARDS * 5  # round 0 predates the field
    for s in range(SHARDS):
        assert env.store.committed_offset(CID, ROWS, s) == 2


def test_a_conflict_after_the_commit_landed_rereads_the_offset_and_skips_it(env: Env) -> None:
    """An ambiguous failure (the commit is in, the writer was told otherwise) is not written twice."""
    real = env.store.append
    raised: list[str] = []

    def lands_then_conflicts(cid: int, kind: str, *args: Any, **kwargs: Any) -> int:
        version = real(cid, kind, *args, **kwargs)
        if not raised:
            raised.append(kind)
            raise CommitConflict("commit conflict (test)")
        return version

    env.store.append = lands_then_conflicts  # type: ignore[method-assign]
    env.writer.retry = CommitRetry(attempts=3, first=0.001, most=0.001)
    env.add(0, ins(0, [1, 2]), shard=0)
    assert env.mat.seal(TOPIC, 0) == ["t0"]
    assert raised == [ROWS]
    assert env.rows().column("id").to_pylist() == [1, 2]
    assert env.store.committed_offset(CID, ROWS, 0) == 0


def test_conflicts_that_never_stop_raise_and_acknowledge_nothing(env: Env) -> None:
    def always(cid: int, kind: str, *args: Any, **kwargs: Any) -> int:
        raise CommitConflict("commit conflict (test)")

    env.store.append = always  # type: ignore[method-assign]
    env.writer.retry = CommitRetry(attempts=3, first=0.001, most=0.001)
    env.add(0, ins(0, [1]), shard=0)
    with pytest.raises(CommitConflict):
        env.mat.seal(TOPIC, 0)
    assert [r.offset for r in env.mat.buffers[(TOPIC, 0)].records] == [0]
    assert env.store.open(CID, ROWS) is None and env.store.open(CID, DELETES) is None


def test_retry_delays_grow_and_stay_bounded() -> None:
    retry = CommitRetry(attempts=5, first=0.1, most=0.4)
    for attempt, cap in enumerate([0.1, 0.2, 0.4, 0.4, 0.4]):
        assert cap / 2 <= retry.delay(attempt) <= cap


def test_writer_defaults_to_retrying(env: Env) -> None:
    assert SegmentWriter(env.store, env.lookup).retry.attempts > 1
