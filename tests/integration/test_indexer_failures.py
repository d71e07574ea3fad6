"""A segment that cannot be indexed fails alone: real broker, Delta, FAISS, processes and pymilvus."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from schemas.catalog import CatalogEvent, IndexInfo
from walvus.index_progress import sealed_segments

pytestmark = pytest.mark.integration
DIM = 8


def _index_state(client: MilvusClient, name: str, index: str, want: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        desc = client.describe_index(name, index)
        if desc["state"] == want:
            return desc
        if time.monotonic() > deadline:
            raise TimeoutError(f"index {index} of {name} is {desc['state']}, not {want}, after {timeout}s")
        time.sleep(0.2)


def _rows(n: int, start: int = 0) -> list[dict]:
    vecs = np.random.default_rng(start).random((n, DIM), dtype=np.float32)
    return [{"id": start + i, "vec": vecs[i].tolist(), "name": f"n{start + i}"} for i in range(n)]


def _schema(client: MilvusClient):  # noqa: ANN202
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("name", DataType.VARCHAR, max_length=16)
    return schema


def test_an_unbuildable_index_fails_alone_and_describe_index_says_why(deployment) -> None:
    deployment.start("streams", "indexer", "gateway")
    client = MilvusClient(deployment.uri)
    api = deployment.api()
    # "broken" comes first in the catalog; its segments hold rows before its index exists
    client.create_collection("broken", schema=_schema(client))
    client.insert("broken", _rows(300))
    client.flush("broken")
    # an index no segment can be built with (IVF_PQ's m must divide dim): the gateway refuses it,
    # so it is put in the catalog directly, as an older version or another site's catalog could
    info = api.catalog.require("broken")
    bad = IndexInfo("vec", "vec_idx", "IVF_PQ", "L2", {"m": 3, "nlist": 4}, index_id=api.clock.now())
    api.publish(info.evolve(CatalogEvent.CREATE_INDEX, indexes={"vec": bad}))

    # "healthy" has a scalar INVERTED index beside its vector index: before, the indexer built it as
    # a FAISS index and failed with "Failed casting from string to fixed_size_binary[0]"
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="HNSW", metric_type="L2", index_name="vec_idx")
    idx.add_index("name", index_type="INVERTED", index_name="name_idx")
    client.create_collection("healthy", schema=_schema(client), index_params=idx)
    client.insert("healthy", _rows(300, start=1000))
    client.flush("healthy")

    done = _index_state(client, "healthy", "vec_idx", "Finished")
    assert (done["indexed_rows"], done["pending_index_rows"]) == (300, 0)
    failed = _index_state(client, "broken", "vec_idx", "Failed")
    assert failed["indexed_rows"] == 0 and failed["total_rows"] == 300
    state, reason = client._get_connection().get_index_state("broken", "vec_idx")
    segments = sealed_segments(api.store, info.collection_id)
    assert f"{len(segments)} of {len(segments)} sealed segments failed to build index vec_idx" in reason
    assert "param m=3 must divide dim=8" in reason

    # the healthy collection is searchable through its index
    client.load_collection("healthy")
    hits = client.search(
        "healthy", data=[_rows(300, start=1000)[5]["vec"]], limit=1, consistency_level="Strong"
    )
    assert hits[0][0]["id"] == 1005

    # counted by collection on the indexer's /metrics; each distinct error logged once per segment
    port = deployment.env["WALVUS_INDEXER_METRICS_PORT"]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    counted = [
        line for line in metrics.splitlines() if line.startswith("walvus_indexer_build_failures_total{")
    ]
    assert any('collection="broken"' in line and float(line.split()[-1]) >= len(segments) for line in counted)
    assert not any('collection="healthy"' in line for line in counted)
    log = (deployment.root / "indexer.log").read_text()
    assert log.count("index build failed collection=broken") == len(segments)
    assert "fixed_size_binary" not in log
    client.close()
