"""The segment store's read interface: a ``TableSnapshot`` answers for the one version it names.

Real Delta tables in tmp_path; no Kafka.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from walvus.exceptions import CommitConflict
from walvus.storage import DELETES, ROWS, SegmentStore, TableSnapshot

CID = 7


def _segment(store: SegmentStore, segment: int, ids: list[int], *, shard: int, last_offset: int) -> int:
    rows = pa.table({"id": pa.array(ids, pa.int64()), "_segment": pa.array([segment] * len(ids), pa.int64())})
    return store.append(CID, ROWS, rows, shard=shard, last_offset=last_offset, metadata={"segment": segment})


@pytest.fixture
def store(tmp_path: Path) -> SegmentStore:
    return SegmentStore(str(tmp_path / "tables"))


def test_a_table_never_written_opens_as_none(store: SegmentStore) -> None:
    assert store.open(CID, ROWS) is None and store.open(CID, DELETES) is None
    assert store.committed_offset(CID, ROWS, 0) == -1


def test_a_snapshot_answers_for_its_version_after_later_commits(store: SegmentStore) -> None:
    _segment(store, 1, [1, 2], shard=0, last_offset=4)
    snap = store.open(CID, ROWS)
    assert isinstance(snap, TableSnapshot) and snap.version == 0
    _segment(store, 2, [3], shard=1, last_offset=9)  # lands after the snapshot was opened
    assert snap.dataset().to_table().column("id").to_pylist() == [1, 2]
    assert (snap.committed_offset(0), snap.committed_offset(1)) == (4, None)  # shard 1: not yet
    assert snap.files().num_rows == 1 and snap.files().column("num_records").to_pylist() == [2]
    assert len(snap.file_uris()) == 1 and [h["version"] for h in snap.history()] == [0]
    assert [h["version"] for h in snap.history(1)] == [0]  # not the commit that came after
    latest = store.open(CID, ROWS)
    assert latest is not None and latest.version == 1 and latest.committed_offset(1) == 9
    assert store.committed_offset(CID, ROWS, 1) == 9 and store.committed_offset(CID, ROWS, 2) == -1
    assert store.open(CID, ROWS, 0) == snap  # an explicit version: equal by what it names


def test_a_rewrite_leaves_its_snapshot_at_the_version_it_read(store: SegmentStore) -> None:
    _segment(store, 1, [1, 2], shard=0, last_offset=4)
    snap = store.open(CID, ROWS)
    assert snap is not None
    kept = snap.dataset().to_table().filter(pa.compute.field("id") == 1)
    version = store.replace_segments(CID, ROWS, snap, kept, [1], metadata={"walvus_operation": "test"})
    assert version == 1 and snap.version == 0
    assert snap.dataset().to_table().column("id").to_pylist() == [1, 2]
    after = store.open(CID, ROWS)
    assert after is not None and after.dataset().to_table().column("id").to_pylist() == [1]
    assert after.committed_offset(0) == 4  # a rewrite keeps the shard's committed offset
    with pytest.raises(CommitConflict):  # a second rewrite from the same version loses
        store.replace_segments(CID, ROWS, snap, kept.slice(0, 0), [1], metadata={"walvus_operation": "test"})


def test_a_rewrite_refuses_a_snapshot_of_another_table(store: SegmentStore) -> None:
    _segment(store, 1, [1], shard=0, last_offset=0)
    snap = store.open(CID, ROWS)
    assert snap is not None
    with pytest.raises(ValueError, match="snapshot of the rows table"):
        store.replace_segments(
            CID, DELETES, snap, pa.table({"id": pa.array([], pa.int64())}), [1], metadata={}
        )
    assert store.open(CID, DELETES) is None and store.open(CID, ROWS) == snap  # nothing written
