"""Snapshots with the real pymilvus client against a real deployment: snapshot, change, drop,
restore, and the restored collection holds exactly the rows of the snapshot, searchable."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

from walvus.inspection import report

pytestmark = pytest.mark.integration
DIM = 8


def _rows(ids: range | list[int], tag: str, rng: np.random.Generator) -> list[dict]:
    vecs = rng.random((len(ids), DIM), dtype=np.float32)
    return [{"id": i, "vec": v.tolist(), "tag": tag, "extra": i % 7} for i, v in zip(ids, vecs, strict=True)]


def _all(client: MilvusClient, name: str, **kw) -> dict[int, tuple]:
    got = client.query(
        name, filter="id >= 0", output_fields=["id", "tag", "extra", "vec"], limit=10_000, **kw
    )
    return {r["id"]: (r["tag"], r["extra"], tuple(np.round(r["vec"], 6))) for r in got}


def _wait_restored(client: MilvusClient, job_id: int, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get_restore_snapshot_state(job_id)
        if state.state in ("RestoreSnapshotCompleted", "RestoreSnapshotFailed"):
            return state
        time.sleep(0.2)
    raise TimeoutError(f"restore job {job_id} did not finish in {timeout}s")


def test_snapshot_survives_changes_and_drop_and_restores_exactly(deployment) -> None:
    deployment.start("streams", "indexer", "gateway")
    client = MilvusClient(deployment.uri)
    rng = np.random.default_rng(3)
    src, dst = "snap_src", "snap_dst"
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.VARCHAR, max_length=32)
    index = client.prepare_index_params()
    index.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 64})
    client.create_collection(
        src, schema=schema, index_params=index, num_shards=2, properties={"mmap.enabled": "false"}
    )
    client.create_partition(src, "p1")
    client.insert(src, _rows(range(0, 300), "a", rng))
    client.insert(src, _rows(range(300, 400), "b", rng), partition_name="p1")
    client.delete(src, ids=list(range(0, 40, 2)))
    client.upsert(src, _rows(range(100, 110), "c", rng))
    expected = _all(client, src, consistency_level="Strong")
    expected_p1 = set(_all(client, src, partition_names=["p1"], consistency_level="Strong"))
    assert len(expected) == 380 and len(expected_p1) == 100

    client.create_snapshot("before", src, description="before the changes")
    assert client.list_snapshots(collection_name=src) == ["before"]
    info = client.describe_snapshot("before", src)
    assert (info.name, info.collection_name, info.description) == ("before", src, "before the changes")
    assert info.partition_names == ["_default", "p1"]
    with pytest.raises(MilvusException, match="snapshot already exists"):
        client.create_snapshot("before", src)

    # changes after the snapshot, then the collection goes
    client.insert(src, _rows(range(1000, 1050), "late", rng))
    client.delete(src, ids=list(range(200, 230)))
    client.upsert(src, _rows(range(300, 310), "late", rng), partition_name="p1")
    src_id = client.describe_collection(src)["collection_id"]
    client.drop_collection(src)
    assert not client.has_collection(src)

    # durable and pinned: another process replays the snapshots topic
    api = deployment.api()
    assert [r.name for r in api.snapshots.snapshots(src)] == ["before"]
    assert api.snapshots.pinned(src_id)
    assert api.store.open(src_id, "rows") is not None  # the drop deleted no table

    with pytest.raises(MilvusException, match="snapshot not found"):
        client.restore_snapshot("nope", source_collection_name=src, target_collection_name=dst)
    job_id = client.restore_snapshot("before", source_collection_name=src, target_collection_name=dst)
    state = _wait_restored(client, job_id)
    assert (state.state, state.progress, state.reason) == ("RestoreSnapshotCompleted", 100, "")
    assert (state.job_id, state.snapshot_name, state.collection_name) == (job_id, "before", dst)
    with pytest.raises(MilvusException, match="collection already exists"):
        client.restore_snapshot("before", source_collection_name=src, target_collection_name=dst)
    shown = report("snapshots", src)  # `walvus inspect snapshots`
    assert "before" in shown and "Completed" in shown and "380/380" in shown
    jobs = client.list_restore_snapshot_jobs(collection_name=dst)
    assert [(j.job_id, j.state) for j in jobs] == [(job_id, "RestoreSnapshotCompleted")]

    # the schema, partitions, properties and index definitions as they were
    desc = client.describe_collection(dst)
    assert [f["name"] for f in desc["fields"]] == ["id", "vec", "tag"] and desc["enable_dynamic_field"]
    assert desc["num_shards"] == 2 and desc["properties"].get("mmap.enabled") == "false"
    assert client.list_partitions(dst) == ["_default", "p1"]
    idx = client.describe_index(dst, index_name=client.list_indexes(dst)[0])
    assert (idx["index_type"], idx["metric_type"], str(idx["M"])) == ("HNSW", "L2", "8")

    # exactly the rows of the snapshot, in their partitions, and searchable
    client.load_collection(dst)
    assert _all(client, dst, consistency_level="Strong") == expected
    assert set(_all(client, dst, partition_names=["p1"], consistency_level="Strong")) == expected_p1
    count = client.query(dst, filter="", output_fields=["count(*)"], consistency_level="Strong")
    assert count[0]["count(*)"] == 380
    probe = 105  # upserted before the snapshot: its "c" version is the one restored
    hit = client.search(
        dst, data=[list(expected[probe][2])], limit=1, output_fields=["tag"], consistency_level="Strong"
    )
    assert hit[0][0]["id"] == probe and hit[0][0]["entity"]["tag"] == "c"

    # snapshots and jobs survive a restart of the gateway
    deployment.stop("gateway")
    deployment.start("gateway")
    client = MilvusClient(deployment.uri)
    assert client.list_snapshots() == ["before"]
    assert client.get_restore_snapshot_state(job_id).state == "RestoreSnapshotCompleted"

    client.drop_snapshot("before", src)
    assert client.list_snapshots() == []
    with pytest.raises(MilvusException, match="snapshot not found"):
        client.describe_snapshot("before", src)
