"""The snapshot RPCs through the real pymilvus client, over the in-memory gateway: what is
refused, with which error, and that a refusal changes nothing."""

from __future__ import annotations

import pytest
from pymilvus import MilvusClient, MilvusException

from tests.memory import running_gateway
from walvus.snapshots import SnapshotBook


class CommittedTables:
    """Table snapshots that hold every WAL offset (the memory log's flush returns at once)."""

    version = 4

    def committed_offset(self, shard: int) -> int:
        return 2**40


def test_snapshot_rpcs_answer_and_refuse_clearly() -> None:
    with running_gateway() as gw:
        client = MilvusClient(gw.uri)
        client.create_collection("docs", dimension=4)
        with pytest.raises(MilvusException, match="snapshots need a walvus deployment"):
            client.create_snapshot("s1", "docs")  # a gateway without the snapshots topic
        gw.walvus.snapshots = SnapshotBook(None, "test")
        gw.walvus.store.open = lambda cid, kind, version=None: CommittedTables()  # type: ignore[attr-defined]
        gw.walvus.store.root = "/tables"  # type: ignore[attr-defined]

        client.create_snapshot("s1", "docs", description="first", compaction_protection_seconds=60)
        assert client.list_snapshots() == ["s1"] and client.list_snapshots(collection_name="other") == []
        info = client.describe_snapshot("s1", "docs")
        assert (info.name, info.description, info.collection_name, info.partition_names) == (
            "s1",
            "first",
            "docs",
            ["_default"],
        )
        assert "@rows_v4,deletes_v4" in info.s3_location

        refusals = [
            (lambda: client.create_snapshot("s1", "docs"), "snapshot already exists"),
            (lambda: client.create_snapshot("s2", "nope"), "collection not found"),
            (lambda: client.create_snapshot("2bad", "docs"), "Invalid snapshot name"),
            (lambda: client.create_snapshot("s2", "docs", db_name="other"), "database not found"),
            (lambda: client.describe_snapshot("s9", "docs"), "snapshot not found"),
            (lambda: client.drop_snapshot("s9", "docs"), "snapshot not found"),
            (lambda: client.get_restore_snapshot_state(12345), "restore job not found"),
            (lambda: client.restore_snapshot("s9", "docs", "copy"), "snapshot not found"),
            (lambda: client.restore_snapshot("s1", "docs", "docs"), "collection already exists"),
            (lambda: client.restore_snapshot("s1", "docs", "1copy"), "Invalid collection name"),
            (lambda: client.restore_snapshot("s1", "docs", "copy", target_db_name="x"), "database not found"),
        ]
        for call, message in refusals:
            with pytest.raises(MilvusException, match=message):
                call()
        assert client.list_snapshots() == ["s1"] and client.list_collections() == ["docs"]
        assert client.list_restore_snapshot_jobs() == []

        client.drop_snapshot("s1", "docs")
        assert client.list_snapshots() == []
