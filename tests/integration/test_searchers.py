"""Searchers as their own processes (``walvus searcher``), with the gateway scattering reads.

Real processes on a real broker: Kafka's consumer-group protocol assigns the shards, the gateway
(``WALVUS_SEARCHERS=remote``) learns who holds what from the groups and merges the answers.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from searcher.directory import SearcherDirectory
from tests.ports import free_port
from walvus.settings import KafkaSettings

pytestmark = pytest.mark.integration
DIM = 8
REMOTE = {"WALVUS_SEARCHERS": "remote", "WALVUS_SEARCHER_RETRY_SECONDS": "40"}
FAST_GROUP = {"WALVUS_SEARCHER_SESSION_TIMEOUT_MS": "6000"}


@pytest.fixture
def remote(deployment):
    deployment.env.update(REMOTE)
    deployment.start("streams", "indexer")
    yield deployment


def _searcher(dep, key: str, group: int = 0) -> None:
    dep.start_as(key, "searcher", WALVUS_SEARCHER_REPLICA_GROUP=str(group), **FAST_GROUP)


def _create(client: MilvusClient, name: str, shards: int = 2, replicas: int = 1) -> None:
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tag", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, num_shards=shards)
    if replicas > 1:
        client.release_collection(name)
        client.load_collection(name, replica_number=replicas)


def _rows(ids: range, rng: np.random.Generator) -> tuple[list[dict], np.ndarray]:
    vecs = rng.random((len(ids), DIM), dtype=np.float32)
    return [{"id": i, "vec": v.tolist(), "tag": i % 7} for i, v in zip(ids, vecs, strict=True)], vecs


def _exact(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    d = ((vecs - q) ** 2).sum(1)
    return ids[np.lexsort((ids, d))][:k].tolist()


def _owners(dep, name_prefix: str = "") -> dict[int, set[str]]:
    """shard -> addresses holding it, as the groups describe them."""
    conf = KafkaSettings().client_config(dep.bootstrap)
    d = SearcherDirectory(conf, dep.namespace)
    try:
        layout = d.refresh(timeout=10)
    finally:
        d.stop()
    out: dict[int, set[str]] = {}
    for topic, shards in layout.owners.items():
        if topic.startswith(f"{dep.namespace}.wal."):
            for s, owners in shards.items():
                out.setdefault(s, set()).update(o.address for o in owners)
    return out


def _wait(cond, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_searchers_each_hold_one_shard_and_answer_as_one(remote):
    dep = remote
    _searcher(dep, "searcher-a")
    _searcher(dep, "searcher-b")
    dep.start("gateway")
    client = MilvusClient(dep.uri)
    _create(client, "two")
    rng = np.random.default_rng(7)
    rows, vecs = _rows(range(3000), rng)
    client.insert("two", rows[:2000])
    client.flush("two")  # sealed segments in both shards, then growing rows on top
    client.insert("two", rows[2000:])
    client.delete("two", ids=list(range(0, 60)))
    ids = np.arange(3000)
    live = ids >= 60
    _wait(lambda: len(_owners(dep)) == 2 and all(len(o) == 1 for o in _owners(dep).values()), what="2 owners")
    owners = _owners(dep)
    assert owners[0] != owners[1]  # one searcher per shard

    qs = rng.random((5, DIM), dtype=np.float32)
    res = client.search("two", qs.tolist(), limit=10, output_fields=["tag"], consistency_level="Strong")
    for q, hits in zip(qs, res, strict=True):
        assert [h["id"] for h in hits] == _exact(vecs[live], ids[live], q, 10)
        assert all(h["entity"]["tag"] == h["id"] % 7 for h in hits)
    page = client.search("two", qs[:1].tolist(), limit=5, offset=5, consistency_level="Strong")[0]
    assert [h["id"] for h in page] == _exact(vecs[live], ids[live], qs[0], 10)[5:]

    count = client.query("two", filter="", output_fields=["count(*)"], consistency_level="Strong")
    assert count[0]["count(*)"] == 2940
    got = client.query(
        "two", filter="tag == 3", output_fields=["id"], limit=4, offset=2, consistency_level="Strong"
    )
    want = [i for i in range(60, 3000) if i % 7 == 3][2:6]
    assert sorted(g["id"] for g in got) == want
    groups = client.query(
        "two", filter="id < 100", output_fields=["tag", "count(*)"], group_by_fields=["tag"]
    )
    assert {g["tag"]: g["count(*)"] for g in groups} == {
        t: sum(1 for i in range(60, 100) if i % 7 == t) for t in range(7)
    }
    grouped = client.search(
        "two",
        qs[:1].tolist(),
        limit=3,
        group_by_field="tag",
        output_fields=["tag"],
        consistency_level="Strong",
    )[0]
    assert len({h["entity"]["tag"] for h in grouped}) == 3
    it = client.query_iterator("two", batch_size=700, filter="id >= 0", output_fields=["id"])
    seen = []
    while page := it.next():
        seen += [r["id"] for r in page]
    it.close()
    assert sorted(seen) == list(range(60, 3000))
    # read-your-writes through the gateway and both searchers
    client.upsert("two", [{"id": 2999, "vec": [0.0] * DIM, "tag": 100}])
    hit = client.search("two", [[0.0] * DIM], limit=1, output_fields=["tag"], consistency_level="Strong")[0][
        0
    ]
    assert hit["id"] == 2999 and hit["entity"]["tag"] == 100
    assert client.get_collection_stats("two")["row_count"] == 2940
    # each write through one gateway, read back at once through another
    port = free_port()
    dep.start_as("gateway-2", "gateway", WALVUS_PORT=str(port), WALVUS_METRICS_PORT="0", WALVUS_REST_PORT="0")
    other = _connect(f"http://127.0.0.1:{port}")
    for i in range(20):
        row = {"id": 5000 + i, "vec": [float(i + 1)] * DIM, "tag": i}
        (client if i % 2 else other).insert("two", [row])
        reader = other if i % 2 else client
        got = reader.query(
            "two", filter=f"id == {5000 + i}", output_fields=["tag"], consistency_level="Strong"
        )
        assert [g["tag"] for g in got] == [i]
    other.close()
    client.close()


def test_a_searcher_joining_takes_shards_and_a_dead_ones_shards_move(remote):
    dep = remote
    _searcher(dep, "searcher-a")
    dep.start("gateway")
    client = MilvusClient(dep.uri)
    _create(client, "moves", shards=4)
    rng = np.random.default_rng(3)
    rows, vecs = _rows(range(1000), rng)
    client.insert("moves", rows)
    ids = np.arange(1000)
    q = vecs[17]
    assert client.search("moves", [q.tolist()], limit=3, consistency_level="Strong")[0][0]["id"] == 17
    _wait(
        lambda: len(_owners(dep)) == 4 and len(set().union(*_owners(dep).values())) == 1, what="a holds all"
    )

    _searcher(dep, "searcher-b")  # joins: Kafka gives it some of the four shards
    _wait(lambda: len(set().union(*_owners(dep).values())) == 2, what="b takes shards")
    for _ in range(5):
        hits = client.search("moves", [q.tolist()], limit=10, consistency_level="Strong")[0]
        assert [h["id"] for h in hits] == _exact(vecs, ids, q, 10)

    dep.kill("searcher-a")  # kill -9: its shards move to b after the group's session timeout
    hits = client.search("moves", [q.tolist()], limit=10, consistency_level="Strong")[
        0
    ]  # waits, then b answers
    assert [h["id"] for h in hits] == _exact(vecs, ids, q, 10)
    assert len(set().union(*_owners(dep).values())) == 1
    assert (
        client.query("moves", filter="", output_fields=["count(*)"], consistency_level="Strong")[0][
            "count(*)"
        ]
        == 1000
    )
    client.close()


def test_replica_failover_under_a_search_loop(remote):
    dep = remote
    _searcher(dep, "searcher-g0", group=0)
    _searcher(dep, "searcher-g1", group=1)
    dep.start("gateway")
    client = MilvusClient(dep.uri)
    _wait(lambda: len(_groups(dep)) == 2, what="two replica groups")
    _create(client, "rep", shards=2, replicas=2)
    replicas = client.describe_replica("rep")
    assert len(replicas) == 2
    rng = np.random.default_rng(5)
    rows, vecs = _rows(range(800), rng)
    client.insert("rep", rows)
    ids = np.arange(800)
    errors: list[str] = []
    done = threading.Event()
    reads = [0]
    next_id = [800]

    def loop() -> None:
        c = MilvusClient(dep.uri)
        while not done.is_set():
            try:
                i = next_id[0]
                c.insert("rep", [{"id": i, "vec": [float(i)] * DIM, "tag": 1}])
                next_id[0] += 1
                got = c.query("rep", filter=f"id == {i}", output_fields=["id"], consistency_level="Strong")
                if [g["id"] for g in got] != [i]:
                    errors.append(f"row {i} not read back: {got}")
                hits = c.search("rep", [vecs[3].tolist()], limit=5, consistency_level="Strong")[0]
                if hits[0]["id"] != 3:
                    errors.append(f"wrong top hit {hits[0]}")
                reads[0] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is what the test counts
                errors.append(repr(exc))
        c.close()

    t = threading.Thread(target=loop)
    t.start()
    _wait(lambda: reads[0] >= 10, what="reads before the kill")
    dep.kill("searcher-g0")
    before = reads[0]
    _wait(lambda: reads[0] >= before + 20, timeout=90, what="reads after the kill")
    done.set()
    t.join(60)
    assert errors == []
    want = _exact(vecs, ids, vecs[3], 5)
    assert [
        h["id"] for h in client.search("rep", [vecs[3].tolist()], limit=5, consistency_level="Strong")[0]
    ] == want
    client.close()


def _connect(uri: str) -> MilvusClient:
    deadline = time.monotonic() + 60
    while True:
        try:
            return MilvusClient(uri)
        except Exception:  # noqa: BLE001 - the gateway is still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _groups(dep) -> dict:
    conf = KafkaSettings().client_config(dep.bootstrap)
    d = SearcherDirectory(conf, dep.namespace)
    try:
        return d.refresh(timeout=10).members
    finally:
        d.stop()


def test_bm25_over_two_searchers_scores_as_one(remote):
    """Each searcher holds one shard; the gateway sums the shards' statistics first, so scores
    equal an in-test BM25 over every document."""
    from tests.integration.test_sparse_bm25 import DOCS, _bm25, _bm25_collection

    dep = remote
    _searcher(dep, "searcher-a")
    _searcher(dep, "searcher-b")
    dep.start("gateway")
    client = MilvusClient(dep.uri)
    _bm25_collection(client, "docs", shards=2)
    client.insert("docs", [{"id": i, "text": t} for i, t in DOCS.items()])
    _wait(lambda: len(_owners(dep)) == 2 and all(len(o) == 1 for o in _owners(dep).values()), what="2 owners")
    docs = dict(DOCS)
    for query in ("quick fox", "lazy dog dog", "search"):
        expected = _bm25(docs, query)
        got = {
            h["id"]: h["distance"] for h in client.search("docs", [query], anns_field="sparse", limit=10)[0]
        }
        assert got.keys() == expected.keys()
        for i, score in expected.items():
            assert got[i] == pytest.approx(score, rel=1e-4)
    client.delete("docs", ids=[2])
    del docs[2]
    expected = _bm25(docs, "quick fox")
    got = {
        h["id"]: h["distance"] for h in client.search("docs", ["quick fox"], anns_field="sparse", limit=10)[0]
    }
    assert got == pytest.approx(expected, rel=1e-4)
    client.close()
