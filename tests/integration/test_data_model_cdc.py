"""Partial updates, array operators and INT8 vectors replicate through CDC: the other site's Delta
tables hold the merged rows and the int8 bytes the source holds.

Site A (the session broker) and site B (a second broker) as in ``test_cdc``.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from pymilvus import DataType, FieldOp, MilvusClient

from tests.integration.test_cdc import cdc, site_a, site_b, site_b_bootstrap  # noqa: F401 (fixtures)
from tests.integration.test_cdc_support import catalog_state, endpoint, live, store_of

pytestmark = pytest.mark.integration
DIM = 8


def test_partial_updates_and_int8_replicate(site_a, site_b, cdc) -> None:  # noqa: F811
    name, task = f"pu_{uuid.uuid4().hex[:8]}", f"dm-{uuid.uuid4().hex[:8]}"
    a = MilvusClient(site_a.uri)
    schema = a.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.INT8_VECTOR, dim=DIM)
    schema.add_field("price", DataType.DOUBLE)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=8)
    idx = a.prepare_index_params()
    idx.add_index("v", index_type="FLAT", metric_type="L2")
    a.create_collection(name, schema=schema, index_params=idx, shards_num=2)
    cdc.client.create({"name": task, "source": endpoint(site_a), "target": endpoint(site_b)})
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(20, DIM), dtype=np.int8)
    a.insert(name, [{"id": i, "v": x[i], "price": float(i), "tags": [i]} for i in range(20)])
    a.load_collection(name)  # the merge reads the live rows
    a.upsert(name, [{"id": i, "price": 100.0 + i} for i in range(0, 20, 2)], partial_update=True)
    a.upsert(
        name, [{"id": i, "tags": [7, 8]} for i in range(0, 20, 5)], field_ops={"tags": FieldOp.array_append()}
    )
    price = {i: (100.0 + i if i % 2 == 0 else float(i)) for i in range(20)}
    tags = {i: [i, 7, 8] if i % 5 == 0 else [i] for i in range(20)}

    # schema changes replicate too: a vector field added, a scalar field added then dropped
    a.add_collection_field(name, "extra", DataType.FLOAT_VECTOR, dim=4, nullable=True)
    a.add_collection_field(name, "tmp", DataType.INT64, nullable=True)
    a.drop_collection_field(name, field_name="tmp")
    a.insert(name, [{"id": 50, "v": x[0], "price": 5.0, "tags": [], "extra": [0.5, 1.0, 1.5, 2.0]}])
    price[50], tags[50] = 5.0, []

    cdc.wait_caught_up(task, after=time.time())
    info = catalog_state(site_b.bootstrap, site_b.namespace)[name]
    MilvusClient(site_b.uri).flush(name)
    store = store_of(site_b)
    assert live(store, info, "price") == price
    assert live(store, info, "tags") == tags
    vectors = live(store, info, "v")
    assert {k: np.frombuffer(v, dtype=np.int8).tolist() for k, v in vectors.items()} == {
        i: x[i].tolist() for i in [*range(20), 0]
    } | {50: x[0].tolist()}
    extra = info.schema.field("extra")
    assert extra is not None and extra.nullable and info.schema.field("tmp") is None
    assert live(store, info, "extra") == {i: None for i in range(20)} | {50: [0.5, 1.0, 1.5, 2.0]}
    cdc.client.delete(task)
