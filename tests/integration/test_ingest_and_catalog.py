"""The ingest topic (JSON from any producer) with its dead-letter topic, and the catalog surviving restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.collection import CollectionSchema, FieldSchema
from schemas.topics import dead_letter_topic, ingest_topic
from schemas.types import DataType
from streams.live import live_rows

pytestmark = pytest.mark.integration


def _schema() -> CollectionSchema:
    return CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("v", DataType.FLOAT_VECTOR, dim=4),
            FieldSchema("name", DataType.VARCHAR, max_length=8),
        ),
        enable_dynamic_field=True,
    )


def _dead_letters(bootstrap: str, topic: str, n: int, timeout: float = 60) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += [m for m in c.consume(100, timeout=0.5) if not m.error()]
    c.close()
    return out


def test_good_records_reach_delta_and_bad_ones_go_to_dead_letter(deployment):
    deployment.start("streams")
    api = deployment.api()
    api.create_collection("ing", _schema(), shards_num=2)
    good = [
        {
            "op": "insert",
            "collection": "ing",
            "row": {"id": 1, "v": [0.1, 0.2, 0.3, 0.4], "name": "a", "x": 1},
        },
        {
            "op": "insert",
            "collection": "ing",
            "rows": [{"id": i, "v": [i, 0, 0, 0], "name": "b"} for i in range(2, 12)],
        },
        {"op": "upsert", "collection": "ing", "row": {"id": 2, "v": [9, 9, 9, 9], "name": "new"}},
        {"op": "delete", "collection": "ing", "ids": [3, 4]},
    ]
    bad = [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"op": "explode", "collection": "ing", "row": {}}).encode(), "unknown op"),
        (
            json.dumps({"op": "insert", "collection": "nope", "row": {"id": 1}}).encode(),
            "collection not found",
        ),
        (
            json.dumps(
                {"op": "insert", "collection": "ing", "row": {"id": 50, "v": [1, 2], "name": "x"}}
            ).encode(),
            "dim",
        ),
        (
            json.dumps({"op": "insert", "collection": "ing", "row": {"id": 51, "v": [1, 2, 3, 4]}}).encode(),
            "missing field 'name'",
        ),
        (
            json.dumps(
                {
                    "op": "insert",
                    "collection": "ing",
                    "row": {"id": 52, "v": [1, 2, 3, 4], "name": "far too long"},
                }
            ).encode(),
            "max_length",
        ),
    ]
    p = Producer({"bootstrap.servers": deployment.bootstrap})
    topic = ingest_topic(deployment.namespace)
    p.produce(topic, json.dumps(good[0]).encode())
    for raw, _ in bad[:4]:
        p.produce(topic, raw)
    for rec in good[1:]:
        p.produce(topic, json.dumps(rec).encode())
    for raw, _ in bad[4:]:
        p.produce(topic, raw)
    p.flush(10)

    dead = _dead_letters(deployment.bootstrap, dead_letter_topic(deployment.namespace), len(bad))
    assert len(dead) == len(bad)
    by_value = {m.value(): dict(m.headers())["walvus.reason"].decode() for m in dead}
    for raw, reason in bad:
        assert raw in by_value, raw
        assert reason in by_value[raw], (reason, by_value[raw])

    info = api.catalog.require("ing")
    deadline = time.monotonic() + 60
    while True:
        api.flush(["ing"])
        rows = {r["id"]: r for r in live_rows(api.store, info).to_pylist()}
        if set(rows) == {1, 2, *range(5, 12)} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(rows) == {1, 2, *range(5, 12)}
    assert rows[2]["name"] == "new"
    assert json.loads(rows[1]["$meta"]) == {"x": 1}


def test_catalog_survives_restart_of_every_process_and_the_broker(tmp_path: Path, monkeypatch):
    from tests.ports import free_port
    from tests.procs import Deployment
    from walvus.kafka import LocalKafka

    broker = LocalKafka(tmp_path / "kafka", port=free_port(), controller_port=free_port())
    bootstrap = broker.start(timeout=120)
    dep = Deployment(bootstrap, tmp_path)
    for k, v in dep.env.items():
        monkeypatch.setenv(k, v)
    try:
        dep.start("streams")
        api = dep.api()
        schema = CollectionSchema(
            fields=(
                FieldSchema("pk", DataType.VARCHAR, is_primary=True, max_length=64),
                FieldSchema("emb", DataType.FLOAT_VECTOR, dim=16),
                FieldSchema(
                    "tags", DataType.ARRAY, element_type=DataType.INT32, max_capacity=4, nullable=True
                ),
                FieldSchema("meta", DataType.JSON, nullable=True),
            ),
            enable_dynamic_field=True,
        )
        before = [api.create_collection(f"c{i}", schema, shards_num=1 + i % 2) for i in range(3)]
        api.create_partition("c0", "p1")
        api.drop_collection("c2")
        expected = {c.name: c for c in api.catalog.collections()}
        dep.close()
        broker.stop()
        broker.start(timeout=120)
        dep2 = Deployment(bootstrap, tmp_path)
        dep2.env.update({"WALVUS_NAMESPACE": dep.namespace, "WALVUS_SITE": dep.namespace})
        for k, v in dep2.env.items():
            monkeypatch.setenv(k, v)
        dep2.start("streams")
        api2 = dep2.api()
        got = {c.name: c for c in api2.catalog.collections()}
        assert set(got) == {"c0", "c1"}
        for name, info in expected.items():
            assert got[name].schema == info.schema
            assert got[name].collection_id == info.collection_id
            assert got[name].shards_num == info.shards_num
        assert "p1" in got["c0"].partitions
        assert before[0].schema == got["c0"].schema
        # the restarted worker still materialises writes to the old collections
        api2.insert("c1", [{"pk": "a", "emb": [0.0] * 16}])
        api2.flush(["c1"], timeout=120)
        assert live_rows(api2.store, got["c1"]).column("pk").to_pylist() == ["a"]
        dep2.close()
    finally:
        broker.stop()
