"""CDC between two real single-node Kafka clusters and two walvus deployments (site A -> site B).

Site A is the session broker; site B is a second broker started here. Each site runs its own
streams worker and gateway; ``walvus cdc serve`` runs as a process that the tests SIGKILL.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pymilvus import DataType as MDataType
from pymilvus import MilvusClient

from cdc.client import ApiError
from schemas.collection import CollectionSchema, FieldSchema
from schemas.topics import wal_topic
from schemas.types import DataType
from schemas.wal import WalRecord
from tests.integration.test_cdc_support import (
    CdcProcess,
    catalog_state,
    endpoint,
    live,
    namespace_api,
    new_cdc,
    site_api,
    store_of,
    wait_flushed,
    wal_records,
)
from tests.ports import free_port
from tests.procs import Deployment
from walvus.cli import main as cli_main
from walvus.kafka import LocalKafka
from walvus.retention import WalRetention, hold_group, hold_prefix

pytestmark = pytest.mark.integration
DIM = 8


@pytest.fixture(scope="module")
def site_b_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = LocalKafka(tmp_path_factory.mktemp("kafka-b"), port=free_port(), controller_port=free_port())
    yield broker.start(timeout=120)
    broker.stop()


@pytest.fixture(scope="module")
def site_a(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = Deployment(kafka_bootstrap, tmp_path_factory.mktemp("site-a"))
    dep.start("streams", "gateway")
    yield dep
    dep.close()


@pytest.fixture(scope="module")
def site_b(site_b_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = Deployment(site_b_bootstrap, tmp_path_factory.mktemp("site-b"))
    dep.start("streams", "gateway")
    yield dep
    dep.close()


@pytest.fixture(scope="module")
def cdc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdcProcess]:
    proc = new_cdc(Path(tmp_path_factory.mktemp("cdc")))
    yield proc
    proc.stop()


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _schema() -> CollectionSchema:
    return CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("v", DataType.FLOAT_VECTOR, dim=DIM),
            FieldSchema("version", DataType.INT64),
        )
    )


def _rows(keys: np.ndarray, version: int) -> dict:
    n = len(keys)
    return {"id": keys, "v": np.random.rand(n, DIM).astype("float32"), "version": np.full(n, version)}


def _write_mix(api, name: str, rng: random.Random, batches: int, key_space: int, version0: int) -> int:
    for i in range(batches):
        keys = np.unique(
            np.array([rng.randrange(key_space) for _ in range(rng.randint(20, 200))], dtype=np.int64)
        )
        op = rng.random()
        if op < 0.5:
            api.insert(name, _rows(keys, version0 + i))
        elif op < 0.85:
            api.upsert(name, _rows(keys, version0 + i))
        else:
            api.delete(name, keys.tolist())
    return version0 + batches


def _same_wal(site_a: Deployment, site_b: Deployment, name: str) -> list[list[bytes]]:
    """B's WAL of the collection holds A's records, in order, each once (byte for byte)."""
    info = site_api(site_a).catalog.require(name)
    a = wal_records(site_a.bootstrap, site_a.namespace, info.collection_id, info.shards_num)
    b = wal_records(site_b.bootstrap, site_b.namespace, info.collection_id, info.shards_num)
    assert [len(x) for x in b] == [len(x) for x in a]
    assert b == a
    return b


def _same_search(a: MilvusClient, b: MilvusClient, name: str, queries: list, count: int) -> None:
    """Strong search and count(*) give the same ids, distances and fields at both sites."""
    kw = {"limit": 15, "output_fields": ["tag"], "consistency_level": "Strong"}
    ra, rb = a.search(name, queries, **kw), b.search(name, queries, **kw)
    for ha, hb in zip(ra, rb, strict=True):
        assert [h["id"] for h in hb] == [h["id"] for h in ha]
        assert np.allclose([h["distance"] for h in hb], [h["distance"] for h in ha], rtol=1e-6)
        assert [h["entity"]["tag"] for h in hb] == [h["entity"]["tag"] for h in ha]
    q = {"output_fields": ["count(*)"], "consistency_level": "Strong"}
    assert b.query(name, **q)[0]["count(*)"] == a.query(name, **q)[0]["count(*)"] == count


def test_pymilvus_changes_replicate_and_search_the_same(site_a, site_b, cdc) -> None:
    name, task = f"docs_{_uid()}", f"pm-{_uid()}"
    a, b = MilvusClient(site_a.uri), MilvusClient(site_b.uri)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", MDataType.INT64, is_primary=True)
    schema.add_field("vec", MDataType.FLOAT_VECTOR, dim=16)
    schema.add_field("tag", MDataType.VARCHAR, max_length=16)
    a.create_collection(name, schema=schema, shards_num=2)
    rng = np.random.default_rng(5)
    rows = [{"id": i, "vec": rng.random(16).tolist(), "tag": f"t{i % 7}", "extra": i} for i in range(400)]
    a.insert(name, rows[:200])
    task_id = cdc.client.create(
        {"name": task, "source": endpoint(site_a), "target": endpoint(site_b), "collections": [name]}
    )["id"]
    a.create_partition(name, "p1")
    a.insert(name, rows[200:300], partition_name="p1")
    a.upsert(name, [{**r, "vec": rng.random(16).tolist(), "tag": "up"} for r in rows[50:120]])
    a.delete(name, ids=list(range(0, 40)))
    a.flush(name)
    a.insert(name, rows[300:])
    index = a.prepare_index_params()
    index.add_index("vec", index_type="FLAT", metric_type="L2")
    a.create_index(name, index, sync=False)  # no indexer runs here: do not wait for the build
    a.load_collection(name)
    got = cdc.wait_caught_up(task, after=time.time())
    assert got["status"]["replicated_records"] > 0 and got["status"]["state"] == "running"
    _same_wal(site_a, site_b, name)
    deadline = time.monotonic() + 30
    while not (b.has_collection(name) and b.list_indexes(name)):
        assert time.monotonic() < deadline, "the collection and its index did not reach site B's catalog"
        time.sleep(0.1)
    assert set(b.list_partitions(name)) == set(a.list_partitions(name)) == {"_default", "p1"}
    assert b.describe_index(name, "vec")["index_type"] == "FLAT"
    b.load_collection(name)  # the catalog says loaded; this loads B's searcher without a new catalog record
    queries = rng.random((4, 16)).tolist()
    _same_search(a, b, name, queries, count=360)
    # B's searcher has the collection loaded now: new data arrives through its WAL tail
    a.insert(name, [{**r, "id": r["id"] + 1000, "vec": rng.random(16).tolist()} for r in rows[:50]])
    cdc.wait_caught_up(task, after=time.time())
    _same_search(a, b, name, queries, count=410)
    # promoting B restarts its processes: they start on a catalog and WAL written in transactions,
    # and the gateway loads what the replicated catalog says is loaded
    site_b.stop("gateway")
    site_b.start("gateway")
    b = MilvusClient(site_b.uri)
    deadline = time.monotonic() + 60
    while str(b.get_load_state(name)["state"]) != "Loaded":
        assert time.monotonic() < deadline, f"B did not load {name} after a restart"
        time.sleep(0.2)
    _same_search(a, b, name, queries, count=410)
    # the task holds site A's WAL where it stands: A's garbage collector never deletes past it
    api_a = site_a.api()
    topic = wal_topic(site_a.namespace, api_a.catalog.require(name).collection_id)
    retention = WalRetention(api_a.kafka.conf)
    hold = hold_group(site_a.namespace, task_id)
    try:
        ends = dict(enumerate(api_a.kafka.end_offsets(topic, 2)))
        deadline = time.monotonic() + 30
        while retention.group_positions(hold, topic, 2) != ends:  # committed after each transaction
            assert time.monotonic() < deadline, retention.group_positions(hold, topic, 2)
            time.sleep(0.2)
        cdc.client.delete(task)
        assert hold not in retention.groups(hold_prefix(site_a.namespace))  # a deleted task holds nothing
    finally:
        retention.close()


def test_sigkill_replicator_loses_and_duplicates_nothing(site_a, site_b, cdc) -> None:
    name, task = f"crash_{_uid()}", f"crash-{_uid()}"
    api_a = site_api(site_a)
    api_a.create_collection(name, _schema(), shards_num=2)
    cdc.client.create(
        {"name": task, "source": endpoint(site_a), "target": endpoint(site_b), "collections": [name]}
    )
    stop, errors = threading.Event(), []

    def writer() -> None:
        rng, version = random.Random(3), 1
        try:
            while not stop.is_set():
                version = _write_mix(api_a, name, rng, 5, key_space=5000, version0=version)
                time.sleep(0.01)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(3):
            time.sleep(random.uniform(1.5, 3.0))  # a session runs about 1.5 s after a start
            cdc.kill()
            time.sleep(random.uniform(0.0, 0.5))
            cdc.start()
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors
    api_a.flush([name], timeout=120)
    got = cdc.wait_caught_up(task, after=time.time())
    assert got["status"]["sessions"] >= 1
    per_shard = _same_wal(site_a, site_b, name)
    for shard in per_shard:  # decoded: every write (ts) appears once per shard
        headers = [WalRecord.decode(v).header for v in shard]
        assert len({(h.ts, h.op) for h in headers}) == len(headers)
    assert sum(len(s) for s in per_shard) > 50
    info = api_a.catalog.require(name)
    wait_flushed(site_b, info)
    assert live(store_of(site_b), info) == live(api_a.store, info)
    assert len(live(api_a.store, info)) > 0
    cdc.client.delete(task)


def test_earliest_latest_and_saved_starts(site_a, site_b, cdc) -> None:
    name = f"hist_{_uid()}"
    api_a = site_api(site_a)
    info = api_a.create_collection(name, _schema(), shards_num=2)
    _write_mix(api_a, name, random.Random(1), 12, key_space=1000, version0=1)
    api_a.create_partition(name, "older")
    before = [len(s) for s in wal_records(site_a.bootstrap, site_a.namespace, info.collection_id, 2)]
    assert sum(before) >= 12
    # latest: a second namespace on B gets only what is written after the task was created
    latest_ep = {**endpoint(site_b), "namespace": f"{site_b.namespace}x", "site": f"{site_b.namespace}x"}
    base = {"source": endpoint(site_a), "collections": [name]}
    cdc.client.create({**base, "name": f"latest-{name}", "target": latest_ep, "start": "latest"})
    saved_ep = {**endpoint(site_b), "namespace": f"{site_b.namespace}y", "site": f"{site_b.namespace}y"}
    topic = f"{site_a.namespace}.wal.{info.collection_id}"
    saved = {topic: {"0": 1, "1": 2}}
    cdc.client.create({**base, "name": f"saved-{name}", "target": saved_ep, "start": saved})
    cdc.client.create({**base, "name": f"earliest-{name}", "target": endpoint(site_b), "start": "earliest"})
    _write_mix(api_a, name, random.Random(2), 3, key_space=1000, version0=100)
    after = time.time()
    for t in ("latest", "saved", "earliest"):
        cdc.wait_caught_up(f"{t}-{name}", after=after)
    full = _same_wal(site_a, site_b, name)  # earliest: the whole history, each record once
    tail = wal_records(site_b.bootstrap, latest_ep["namespace"], info.collection_id, 2)
    assert tail == [s[n:] for s, n in zip(full, before, strict=True)]
    assert sum(len(s) for s in tail) >= 3
    from_saved = wal_records(site_b.bootstrap, saved_ep["namespace"], info.collection_id, 2)
    assert from_saved == [full[0][1:], full[1][2:]]
    on_b = catalog_state(site_b.bootstrap, site_b.namespace)[name]  # the task is caught up
    assert on_b.collection_id == info.collection_id and "older" in on_b.partitions
    for t in ("latest", "saved", "earliest"):
        cdc.client.delete(f"{t}-{name}")


def test_pause_then_resume_loses_nothing_and_lag_recovers(site_a, site_b, cdc) -> None:
    name, task = f"pause_{_uid()}", f"pause-{_uid()}"
    api_a = site_api(site_a)
    info = api_a.create_collection(name, _schema(), shards_num=2)
    cdc.client.create(
        {"name": task, "source": endpoint(site_a), "target": endpoint(site_b), "collections": [name]}
    )
    _write_mix(api_a, name, random.Random(4), 4, key_space=500, version0=1)
    cdc.wait_caught_up(task)
    paused = cdc.client.pause(task)
    assert paused["status"]["state"] == "paused"
    held = wal_records(site_b.bootstrap, site_b.namespace, info.collection_id, 2)
    _write_mix(api_a, name, random.Random(5), 6, key_space=500, version0=10)
    time.sleep(1.0)
    got = cdc.client.get(task)
    assert got["lag"]["records"] >= 6 and got["lag"]["seconds"] >= 0.9
    assert 'walvus_cdc_lag_records{partition="0",task="' + task in cdc.client.metrics()
    assert wal_records(site_b.bootstrap, site_b.namespace, info.collection_id, 2) == held
    resumed = cdc.client.resume(task)
    assert resumed["status"]["state"] in ("starting", "running")
    got = cdc.wait_caught_up(task, after=time.time())
    assert got["lag"]["records"] == 0 and got["lag"]["seconds"] == 0
    _same_wal(site_a, site_b, name)
    cdc.client.delete(task)


def _quiet(cdc: CdcProcess, *tasks: str) -> list[dict]:
    """Wait until every task is caught up and none of them moved since the previous round."""
    before: list | None = None
    while True:
        after = time.time()
        now = [cdc.wait_caught_up(t, after) for t in tasks]
        counts = [(t["status"]["replicated_records"], t["status"]["skipped_records"]) for t in now]
        if counts == before:
            return now
        before = counts


def test_opposite_tasks_do_not_echo(site_b_bootstrap, kafka_bootstrap, cdc) -> None:
    """A->B and B->A over every collection: x is born on A, y on B, z on A and written at both."""
    ns_a, ns_b = f"bia{_uid()}", f"bib{_uid()}"
    a, b = namespace_api(kafka_bootstrap, ns_a), namespace_api(site_b_bootstrap, ns_b)
    ep_a = {"bootstrap": kafka_bootstrap, "namespace": ns_a, "site": ns_a}
    ep_b = {"bootstrap": site_b_bootstrap, "namespace": ns_b, "site": ns_b}
    try:
        x = a.create_collection("x", _schema())
        z = a.create_collection("z", _schema(), shards_num=2)
        y = b.create_collection("y", _schema())
        cdc.client.create({"name": f"ab-{ns_a}", "source": ep_a, "target": ep_b})
        cdc.client.create({"name": f"ba-{ns_a}", "source": ep_b, "target": ep_a})
        _write_mix(a, "x", random.Random(1), 5, 1000, 1)
        _write_mix(b, "y", random.Random(2), 5, 1000, 1)
        deadline = time.monotonic() + 30
        while b.catalog.get("z") is None:
            assert time.monotonic() < deadline, "z did not reach B"
            time.sleep(0.05)
        _write_mix(a, "z", random.Random(3), 4, 1000, 1)  # keys 0..999 on A
        _write_mix(b, "z", random.Random(4), 4, 1000, 1)  # the same keys on B: see RUNBOOK (conflicts)
        b.create_partition("z", "from_b")
        ab, ba = _quiet(cdc, f"ab-{ns_a}", f"ba-{ns_a}")
        assert ab["status"]["skipped_records"]["origin"] > 0 and ba["status"]["skipped_records"]["origin"] > 0
        for info in (x, y, z):
            wa = wal_records(kafka_bootstrap, ns_a, info.collection_id, info.shards_num)
            wb = wal_records(site_b_bootstrap, ns_b, info.collection_id, info.shards_num)
            for sa, sb in zip(wa, wb, strict=True):
                assert sorted(sa) == sorted(sb), f"{info.name}: the sites hold different records"
                headers = [WalRecord.decode(v).header for v in sa]
                assert len({(h.origin, h.ts) for h in headers}) == len(headers), f"{info.name} echoed"
                for origin in (ns_a, ns_b):  # each site's writes keep their order at the other site
                    assert [v for v in sa if WalRecord.decode(v).header.origin == origin] == [
                        v for v in sb if WalRecord.decode(v).header.origin == origin
                    ]
        cat_a, cat_b = catalog_state(kafka_bootstrap, ns_a), catalog_state(site_b_bootstrap, ns_b)
        assert cat_a["z"].partitions == cat_b["z"].partitions and "from_b" in cat_a["z"].partitions
        assert cat_a["y"].collection_id == y.collection_id and cat_b["x"].collection_id == x.collection_id
        assert cat_b["x"].origin == ns_a and cat_a["y"].origin == ns_b
    finally:
        for t in (f"ab-{ns_a}", f"ba-{ns_a}"):
            try:
                cdc.client.delete(t)
            except ApiError:
                pass
        a.close()
        b.close()


def test_bad_requests_are_rejected_and_nothing_starts(site_a, site_b, cdc, capsys) -> None:
    name = f"bad_{_uid()}"
    site_api(site_a).create_collection(name, _schema())
    good = {
        "name": f"bad-{_uid()}",
        "source": endpoint(site_a),
        "target": endpoint(site_b),
        "collections": [name],
    }
    before = {t["id"] for t in cdc.client.list()}
    cases = [
        (
            {**good, "collections": [name, "no_such_collection"]},
            400,
            "UnknownCollection",
            "no_such_collection",
        ),
        (
            {**good, "target": {**endpoint(site_b), "bootstrap": f"127.0.0.1:{free_port()}"}},
            502,
            "ClusterUnreachable",
            "unreachable",
        ),
        ({**good, "start": "yesterday"}, 400, "InvalidTask", "start"),
        ({**good, "collections": "x;y"}, 400, "InvalidTask", "collection"),
        ({**good, "colections": [name]}, 400, "InvalidTask", "colections"),
        ({k: v for k, v in good.items() if k != "target"}, 400, "InvalidTask", "target"),
        ({**good, "source": {**endpoint(site_a), "namespace": "nowhere"}}, 400, "InvalidTask", "catalog"),
        ({**good, "target": endpoint(site_a)}, 400, "InvalidTask", "same"),
    ]
    for body, status, kind, words in cases:
        with pytest.raises(ApiError) as err:
            cdc.client.create(body)
        assert (err.value.status, err.value.type) == (status, kind), err.value.message
        assert words in err.value.message
    with pytest.raises(ApiError) as err:
        cdc.client.request("POST", "/tasks", raw=b"{not json")
    assert err.value.status == 400 and "not valid JSON" in err.value.message
    with pytest.raises(ApiError) as err:
        cdc.client.get("no-such-task")
    assert err.value.status == 404
    assert {t["id"] for t in cdc.client.list()} == before
    # the CLI reports the server's reason and exits non-zero
    args = [
        "cdc",
        "--url",
        cdc.url,
        "create",
        "cli-bad",
        "--source",
        site_a.bootstrap,
        "--target",
        site_b.bootstrap,
    ]
    args += [
        "--source-namespace",
        site_a.namespace,
        "--target-namespace",
        site_b.namespace,
        "--collections",
        "nope",
    ]
    assert cli_main(args) == 2
    assert "collection not found on the source site: nope" in capsys.readouterr().err
    created = cdc.client.create(good)
    with pytest.raises(ApiError) as err:
        cdc.client.create(good)
    assert err.value.status == 409
    cdc.client.delete(created["id"])
