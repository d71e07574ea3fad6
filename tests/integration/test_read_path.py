"""The read path end to end: pymilvus -> gateway -> searcher/indexer, on a real broker and real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pymilvus import Collection, DataType, MilvusClient, MilvusException, connections

from tests.procs import LAYOUTS, Deployment

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DIM = 16


@pytest.fixture(scope="module", params=LAYOUTS)
def running(request, kafka_bootstrap, tmp_path_factory):
    """One deployment per layout for the module's tests (each uses collections of its own); the
    restart test, last in the file, stops and starts it."""
    dep = Deployment(kafka_bootstrap, tmp_path_factory.mktemp(f"read-path-{request.param}"))
    try:
        dep.start_all(request.param)
        yield dep
    finally:
        dep.close()


@pytest.fixture
def live(running):
    client = MilvusClient(running.uri)
    yield running, client
    client.close()


def _create(client: MilvusClient, name: str, shards: int = 2) -> None:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("n", DataType.INT64)
    schema.add_field("title", DataType.VARCHAR, max_length=32)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 16, "efConstruction": 64})
    client.create_collection(name, schema=schema, index_params=idx, num_shards=shards)


def _rows(ids, rng, title="t") -> list[dict]:
    return [
        {"id": int(i), "vec": rng.random(DIM).astype("float32").tolist(), "n": int(i), "title": title}
        for i in ids
    ]


def test_quickstart_runs_unchanged(live):
    dep, _ = live
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), dep.uri],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "count: 988" in r.stdout


def test_read_your_writes_upsert_delete_and_exact_count(live):
    _, client = live
    _create(client, "rw")
    rng = np.random.default_rng(0)
    rows = _rows(range(500), rng)
    client.insert("rw", rows)
    hit = client.search("rw", [rows[42]["vec"]], limit=1, consistency_level="Strong")[0][0]
    assert hit["id"] == 42 and hit["distance"] == pytest.approx(0.0, abs=1e-5)

    new_vec = rng.random(DIM).astype("float32").tolist()
    client.upsert("rw", [{"id": 42, "vec": new_vec, "n": -42, "title": "new"}])
    got = client.get("rw", ids=[42], output_fields=["n", "title"])
    assert [(g["n"], g["title"]) for g in got] == [(-42, "new")]
    hits = client.search("rw", [rows[42]["vec"]], limit=500, output_fields=["n"], consistency_level="Strong")[
        0
    ]
    assert [h["id"] for h in hits].count(42) == 1
    assert all(h["entity"]["n"] != 42 for h in hits)  # the old version never appears

    client.delete("rw", ids=[1, 2, 3])
    client.delete("rw", filter="n >= 490")
    res = client.query("rw", filter="id in [1, 2, 3, 495]", output_fields=["id"], consistency_level="Strong")
    assert res == []
    count = client.query("rw", filter="", output_fields=["count(*)"], consistency_level="Strong")[0][
        "count(*)"
    ]
    assert count == 500 - 3 - 10
    # the searcher reports how far it has consumed each shard of the WAL: past every write above
    consumed = dict(kv.split(":") for kv in client.get_collection_stats("rw")["consumed_offsets"].split(","))
    assert sorted(consumed) == ["0", "1"] and all(int(v) >= 0 for v in consumed.values())
    client.flush("rw")
    count = client.query("rw", filter="", output_fields=["count(*)"], consistency_level="Strong")[0][
        "count(*)"
    ]
    assert count == 487
    filtered = client.search(
        "rw",
        [rows[10]["vec"]],
        limit=5,
        filter="n < 100 and title == 't'",
        output_fields=["n"],
        consistency_level="Strong",
    )[0]
    assert filtered and all(h["entity"]["n"] < 100 for h in filtered)


def test_handoff_while_inserting_and_flushing(live):
    """Every acknowledged row is found by the next Strong search; no key is ever returned twice."""
    _, client = live
    _create(client, "handoff")
    writer_client = MilvusClient(live[0].uri)
    rng = np.random.default_rng(1)
    acked: list[dict] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            base = 0
            while not stop.is_set():
                batch = _rows(range(base, base + 50), rng)
                writer_client.insert("handoff", batch)
                with lock:
                    acked.extend(batch)
                base += 50
                if base % 1000 == 0:
                    writer_client.flush("handoff")
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    checked = 0
    try:
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            with lock:
                if not acked:
                    continue
                probe = acked[-1]
                total = len(acked)
            hits = client.search("handoff", [probe["vec"]], limit=10, consistency_level="Strong")[0]
            ids = [h["id"] for h in hits]
            assert probe["id"] in ids, f"acknowledged row {probe['id']} not found"
            assert len(ids) == len(set(ids)), "a key was returned twice"
            count = client.query(
                "handoff", filter="", output_fields=["count(*)"], consistency_level="Strong"
            )[0]["count(*)"]
            assert count >= total
            checked += 1
    finally:
        stop.set()
        t.join(30)
        writer_client.close()
    assert not errors, errors
    assert checked > 20
    with lock:
        expected = len(acked)
    count = client.query("handoff", filter="", output_fields=["count(*)"], consistency_level="Strong")[0]
    assert count["count(*)"] == expected


def test_bad_input_is_rejected_and_writes_nothing(live):
    _, client = live
    _create(client, "bad")
    rng = np.random.default_rng(2)
    client.insert("bad", _rows(range(10), rng))
    with pytest.raises(MilvusException, match="dim"):
        client.insert("bad", [{"id": 100, "vec": [0.1] * (DIM + 1), "n": 1, "title": "x"}])
    with pytest.raises(MilvusException, match="n"):
        client.insert("bad", [{"id": 101, "vec": [0.1] * DIM, "n": "not a number", "title": "x"}])
    with pytest.raises(MilvusException, match="not found|not exist"):
        client.insert("nope", [{"id": 1, "vec": [0.1] * DIM}])
    with pytest.raises(MilvusException, match="filter|expr|invalid"):
        client.search("bad", [[0.1] * DIM], limit=3, filter="n >> 3")
    with pytest.raises(MilvusException, match="dimension|dim"):
        client.search("bad", [[0.1] * (DIM - 1)], limit=3)
    client.release_collection("bad")
    with pytest.raises(MilvusException, match="not loaded"):
        client.search("bad", [[0.1] * DIM], limit=3)
    client.load_collection("bad")
    count = client.query("bad", filter="", output_fields=["count(*)"], consistency_level="Strong")[0][
        "count(*)"
    ]
    assert count == 10
    assert client.query("bad", filter="id >= 100", output_fields=["id"], consistency_level="Strong") == []


@pytest.mark.filterwarnings("ignore:.*ORM-style")
def test_row_count_of_a_released_or_never_loaded_collection_comes_from_storage(live):
    """Milvus counts persisted rows without loading: after a flush the count equals count(*)."""
    dep, client = live
    _create(client, "stats")
    client.create_partition("stats", "p")
    rng = np.random.default_rng(4)
    client.insert("stats", _rows(range(40), rng))
    client.insert("stats", _rows(range(100, 110), rng), partition_name="p")
    client.upsert("stats", _rows(range(5), rng, title="again"))
    client.delete("stats", ids=[30, 31, 105])
    client.flush("stats")
    count = client.query("stats", filter="", output_fields=["count(*)"], consistency_level="Strong")
    assert count[0]["count(*)"] == 40 + 10 - 3
    client.release_collection("stats")
    assert client.get_collection_stats("stats")["row_count"] == 47
    assert client.get_partition_stats("stats", "p")["row_count"] == 9
    assert client.get_partition_stats("stats", "_default")["row_count"] == 38
    connections.connect(alias="orm_stats", uri=dep.uri)
    try:
        assert Collection("stats", using="orm_stats").num_entities == 47  # the ORM asks the same RPC
    finally:
        connections.disconnect("orm_stats")

    schema = client.create_schema()
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection("never_loaded", schema=schema)  # no index: never loaded
    client.insert("never_loaded", [{"id": i, "vec": [0.5] * DIM} for i in range(7)])
    client.flush("never_loaded")
    assert client.get_collection_stats("never_loaded")["row_count"] == 7


def test_restart_every_process_then_load_gives_identical_results(live):
    dep, client = live
    _create(client, "restart")
    rng = np.random.default_rng(3)
    client.insert("restart", _rows(range(3000), rng))
    client.delete("restart", ids=list(range(0, 3000, 7)))
    client.flush("restart")
    queries = rng.random((5, DIM)).astype("float32").tolist()
    before = client.search("restart", queries, limit=10, consistency_level="Strong")
    count_before = client.query("restart", filter="", output_fields=["count(*)"], consistency_level="Strong")
    client.close()
    dep.stop_all()
    dep.start_all(dep.layout)
    # a new address string: pymilvus shares channels per address, and the old one sits in gRPC's
    # reconnect backoff after the server went away
    client2 = MilvusClient(dep.uri.replace("127.0.0.1", "localhost"))
    for attempt in range(20):
        try:
            client2.load_collection("restart")
            break
        except MilvusException:
            if attempt == 19:
                raise
            time.sleep(0.5)
    after = client2.search("restart", queries, limit=10, consistency_level="Strong")
    assert [[h["id"] for h in q] for q in after] == [[h["id"] for h in q] for q in before]
    assert (
        client2.query("restart", filter="", output_fields=["count(*)"], consistency_level="Strong")
        == count_before
    )
    client2.close()


def test_two_gateway_processes_share_the_port_and_read_every_write(deployment):
    """``WALVUS_GATEWAY_PROCESSES=2``: clients land on either process; every one of them sees
    each acknowledged write at once under Strong, and under Session (served as Strong there)."""
    deployment.env["WALVUS_GATEWAY_PROCESSES"] = "2"
    deployment.start("streams", "indexer", "gateway")
    deadline = time.monotonic() + 90
    while len(_listening(deployment)) < 2:  # the second process starts after the first serves
        assert time.monotonic() < deadline, _listening(deployment)
        time.sleep(0.2)
    clients = [MilvusClient(deployment.uri, dedicated=True) for _ in range(6)]  # a connection each
    try:
        _create(clients[0], "two")
        for c in clients:  # each client's connection may be on another process: wait for it to load
            deadline = time.monotonic() + 60
            while "Loaded" not in str(c.get_load_state("two")["state"]):
                assert time.monotonic() < deadline, "the collection never loaded on every process"
                time.sleep(0.2)
        rng = np.random.default_rng(5)
        for i, writer in enumerate(clients):
            rows = _rows(range(i * 10, i * 10 + 10), rng)
            writer.insert("two", rows)
            for reader in clients:
                for level in ("Strong", "Session"):
                    got = reader.query(
                        "two", filter=f"id >= {i * 10}", output_fields=["id"], consistency_level=level
                    )
                    assert sorted(r["id"] for r in got) == list(range(i * 10, i * 10 + 10)), (i, level)
    finally:
        for c in clients:
            c.close()
    first = deployment.procs.pop("gateway")  # kill -9 the first gateway: its sibling goes with it
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", deployment.port), timeout=1).close()
        except OSError:
            break  # nobody serves the port any more
        assert time.monotonic() < deadline, "a gateway process outlived the first one"
        time.sleep(0.2)


def _listening(deployment) -> list[str]:
    """The gateway processes that bound the port so far (each logs one line)."""
    return [
        line for line in deployment.log_tail("gateway", 10_000).splitlines() if "gateway listening" in line
    ]


def test_vectors_come_back_exactly_from_indexed_segments(live):
    """A sealed, IVF_FLAT-indexed segment keeps its vectors in the index only: searches and queries
    that return the vector field give the inserted floats back, bit for bit."""
    _, client = live
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("n", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 8})
    client.create_collection("kept", schema=schema, index_params=idx, num_shards=2)
    rows = _rows(range(2000), np.random.default_rng(5))
    for r in rows:
        del r["title"]
    client.insert("kept", rows)
    client.flush("kept")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        info = client.describe_index("kept", "vec")
        if int(info.get("pending_index_rows", 1)) == 0 and int(info.get("indexed_rows", 0)) == 2000:
            break
        time.sleep(0.5)
    client.release_collection("kept")
    client.load_collection("kept")  # sealed segments read back with their index attached
    want = {r["id"]: np.asarray(r["vec"], np.float32) for r in rows}

    def same(vec, key) -> bool:
        return np.array_equal(np.asarray(vec, np.float32), want[key])

    probes = [rows[i]["vec"] for i in (0, 777, 1999)]
    for fields in (["vec"], ["n", "vec"]):
        hits = client.search("kept", probes, limit=5, output_fields=fields, consistency_level="Strong")
        assert [h[0]["id"] for h in hits] == [0, 777, 1999]
        assert all(same(h["entity"]["vec"], h["id"]) for q in hits for h in q)
    got = client.query(
        "kept", filter="id in [3, 1500, 42]", output_fields=["vec", "n"], consistency_level="Strong"
    )
    assert sorted(g["id"] for g in got) == [3, 42, 1500]
    assert all(same(g["vec"], g["id"]) and g["n"] == g["id"] for g in got)
