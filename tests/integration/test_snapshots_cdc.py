"""A restore is ordinary writes: CDC replicates the restored collection to the other site.

Site A (the session broker) and site B (a second broker) as in ``test_cdc``; a CDC task for every
collection replicates A to B.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from tests.integration.test_cdc import cdc, site_a, site_b, site_b_bootstrap  # noqa: F401 (fixtures)
from tests.integration.test_cdc_support import catalog_state, endpoint, live, store_of

pytestmark = pytest.mark.integration


def test_a_restore_replicates_to_the_other_site(site_a, site_b, cdc) -> None:  # noqa: F811
    src, dst, task = f"s_{uuid.uuid4().hex[:8]}", f"r_{uuid.uuid4().hex[:8]}", f"snap-{uuid.uuid4().hex[:8]}"
    a = MilvusClient(site_a.uri)
    schema = a.create_schema(auto_id=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=4)
    schema.add_field("tag", DataType.VARCHAR, max_length=16)
    a.create_collection(src, schema=schema, shards_num=2)
    rng = np.random.default_rng(1)
    ids = a.insert(src, [{"vec": rng.random(4).tolist(), "tag": f"t{i}"} for i in range(200)])["ids"]
    a.delete(src, ids=ids[:20])
    a.create_snapshot("s", src)
    a.drop_collection(src)
    job = a.restore_snapshot("s", source_collection_name=src, target_collection_name=dst)
    deadline = time.monotonic() + 120
    while (state := a.get_restore_snapshot_state(job)).state != "RestoreSnapshotCompleted":
        assert state.state != "RestoreSnapshotFailed", state.reason
        assert time.monotonic() < deadline, "the restore did not complete"
        time.sleep(0.2)

    cdc.client.create({"name": task, "source": endpoint(site_a), "target": endpoint(site_b)})
    cdc.wait_caught_up(task, after=time.time())
    info = catalog_state(site_b.bootstrap, site_b.namespace)[dst]
    assert info.schema.primary.auto_id and info.shards_num == 2
    MilvusClient(site_b.uri).flush(dst)  # a restore writes no deletes: seal B's rows and tombstone tables
    expected = {k: f"t{i}" for i, k in enumerate(ids) if i >= 20}
    assert live(store_of(site_b), info, "tag") == expected  # the same keys (auto ids kept), once each
    cdc.client.delete(task)
