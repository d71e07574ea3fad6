"""Compaction through pymilvus against a real walvus: compact() / get_compaction_state(), space
freed on disk, identical results, searches during the swap, TTL and dropped partitions, kill -9."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from pymilvus import MilvusClient
from pymilvus.client.types import State

from schemas.segments import is_compacted
from streams.live import live_rows
from tests.integration.search_support import create_flat_collection, running, stats
from walvus.storage import DELETES, ROWS

pytestmark = pytest.mark.integration
DIM = 8
# removed files are deleted at once; the policy never fires on its own in this module
ENV = {"WALVUS_VACUUM_RETENTION_SECONDS": "0", "WALVUS_COMPACTION_CHECK_SECONDS": "3600"}


@pytest.fixture(scope="module")
def live(kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("compaction"), **ENV) as pair:
        yield pair


def _rows(ids, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((len(ids), DIM)).astype(np.float32)
    return [{"id": int(i), "vec": vecs[k].tolist(), "n": n} for k, i in enumerate(ids)]


def _fill(client: MilvusClient, name: str, shards: int = 2) -> dict[int, int]:
    """Several small segments with superseded and deleted rows; returns the live id -> n."""
    create_flat_collection(client, name, DIM, num_shards=shards)
    model: dict[int, int] = {}
    for b in range(4):
        ids = range(b * 300, (b + 1) * 300)
        client.insert(name, _rows(ids, b, b))
        model.update(dict.fromkeys(ids, b))
        client.flush(name)
    client.upsert(name, _rows(range(0, 600, 2), 10, 10))  # half of the first two segments, again
    model.update(dict.fromkeys(range(0, 600, 2), 10))
    client.delete(name, ids=list(range(900, 1200, 3)))
    for i in range(900, 1200, 3):
        model.pop(i)
    client.flush(name)
    return model


def _all(client: MilvusClient, name: str) -> dict[int, int]:
    got = client.query(name, filter="id >= 0", output_fields=["n"], limit=16_384, consistency_level="Strong")
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)), "a key returned twice"
    return {r["id"]: r["n"] for r in got}


class Answers:
    """Top-10 hits of a few fixed queries: the same ids and fields, distances equal to float32 noise."""

    def __init__(self, client: MilvusClient, name: str) -> None:
        queries = np.random.default_rng(99).standard_normal((5, DIM)).astype(np.float32).tolist()
        res = client.search(name, queries, limit=10, output_fields=["n"], consistency_level="Strong")
        self.hits = [[(h["id"], h["entity"]["n"]) for h in hits] for hits in res]
        self.distances = np.array([[h["distance"] for h in hits] for hits in res], dtype=np.float64)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Answers)
            and self.hits == other.hits
            and np.allclose(self.distances, other.distances, rtol=1e-5, atol=1e-5)
        )

    def __repr__(self) -> str:
        return f"Answers({self.hits})"


def _searches(client: MilvusClient, name: str) -> Answers:
    return Answers(client, name)


def _table_bytes(dep, name: str) -> int:
    cid = dep.api().catalog.require(name).collection_id
    root = Path(dep.api().store.table_uri(cid, ROWS)).parent
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def _stored(dep, name: str, kind: str):
    cid = dep.api().catalog.require(name).collection_id
    return dep.api().store.read(cid, kind)


def _compact(client: MilvusClient, name: str, timeout: float = 90) -> int:
    cid = client.compact(name)
    deadline = time.monotonic() + timeout
    while (state := client.get_compaction_state(cid)) != "Completed":
        assert state == "Executing", state
        assert time.monotonic() < deadline, "compaction not completed in time"
        time.sleep(0.2)
    return cid


def _wait_swapped(client: MilvusClient, name: str, timeout: float = 90) -> dict[str, int]:
    """Until the searcher serves only compacted segments (their indexes attached), no growing rows."""
    deadline = time.monotonic() + timeout
    while True:
        s = stats(client, name)
        if s["sealed_segments"] and s["compacted_segments"] == s["sealed_segments"] == s["loaded_indexes"]:
            if s["growing_rows"] == 0:
                return s
        assert time.monotonic() < deadline, f"compacted segments not swapped in: {s}"
        time.sleep(0.2)


def _compaction_commits(dep, name: str) -> int:
    cid = dep.api().catalog.require(name).collection_id
    return sum(1 for h in dep.api().store.open(cid, ROWS).history() if "compaction_id" in h)


def _no_duplicate_rows(rows) -> None:
    pairs = rows.group_by(["_shard", "_seq"]).aggregate([]).num_rows
    assert pairs == rows.num_rows, "a WAL row is stored twice"


def test_compact_frees_space_and_keeps_every_answer(live):
    dep, client = live
    model = _fill(client, "frees")
    assert _all(client, "frees") == model
    before_search = _searches(client, "frees")
    before_bytes = _table_bytes(dep, "frees")
    before_segments = stats(client, "frees")["sealed_segments"]

    cid = _compact(client, "frees")

    rows = _stored(dep, "frees", ROWS)
    assert rows.num_rows == len(model)  # no superseded or deleted row is left on disk
    _no_duplicate_rows(rows)
    assert all(is_compacted(s) for s in set(rows.column("_segment").to_pylist()))
    assert _stored(dep, "frees", DELETES).num_rows == 0  # the tombstones hid nothing any more
    after_bytes = _table_bytes(dep, "frees")
    assert after_bytes < before_bytes, (before_bytes, after_bytes)
    s = _wait_swapped(client, "frees")
    assert s["sealed_segments"] < before_segments
    assert _all(client, "frees") == model
    assert _searches(client, "frees") == before_search
    plans = client.get_compaction_plans(cid)
    assert plans.state == State.Completed and plans.plans
    assert all(len(p.sources) >= 1 and is_compacted(p.target) for p in plans.plans)
    assert client.get_compaction_state(cid + 1) == "UndefiedState"  # an id nobody asked for
    # writes after the compaction still land once
    client.upsert("frees", _rows([1, 3], 20, 20))
    model.update({1: 20, 3: 20})
    assert _all(client, "frees") == model


def test_searches_during_compaction_see_no_gap_and_no_duplicate(live):
    dep, client = live
    model = _fill(client, "busy")
    expected = _searches(client, "busy")
    errors: list[str] = []
    rounds = [0]
    stop = threading.Event()

    def reader() -> None:
        other = MilvusClient(dep.uri)
        try:
            while not stop.is_set():
                n = other.query("busy", filter="", output_fields=["count(*)"], consistency_level="Strong")
                if n[0]["count(*)"] != len(model):
                    errors.append(f"count {n[0]['count(*)']} != {len(model)}")
                got = _all(other, "busy")
                if got != model:
                    errors.append(f"query differs: {len(got)} rows")
                if _searches(other, "busy") != expected:
                    errors.append("search results differ")
                rounds[0] += 1
        except Exception as exc:  # surfaced below
            errors.append(repr(exc))
        finally:
            other.close()

    t = threading.Thread(target=reader)
    t.start()
    try:
        _compact(client, "busy")
        _wait_swapped(client, "busy")
        seen = rounds[0]
        while rounds[0] < seen + 2:  # a few more reads after the swap
            assert t.is_alive()
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(60)
    assert not errors, errors[:5]
    assert rounds[0] > 2


def test_writes_and_seals_during_compaction_land_exactly_once(live):
    dep, client = live
    model = _fill(client, "racing")
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        other = MilvusClient(dep.uri)
        try:
            b = 0
            while not stop.is_set():  # upserts and deletes, each batch sealed by a flush
                b += 1
                keys = range(b * 7 % 1200, b * 7 % 1200 + 40)
                other.upsert("racing", _rows(keys, 100 + b, 100 + b))
                model.update(dict.fromkeys(keys, 100 + b))
                gone = [k + 40 for k in keys if k % 5 == 0]
                other.delete("racing", ids=gone)
                for k in gone:
                    model.pop(k, None)
                other.flush("racing")
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            other.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(1.0)  # pacing: seals are under way
        _compact(client, "racing")
        time.sleep(1.0)  # pacing: and go on after it
    finally:
        stop.set()
        t.join(120)
    assert not errors, errors
    client.flush("racing")
    api = dep.api()
    live = live_rows(api.store, api.catalog.require("racing"))
    assert dict(zip(live.column("id").to_pylist(), live.column("n").to_pylist(), strict=True)) == model
    _no_duplicate_rows(_stored(dep, "racing", ROWS))
    assert _all(client, "racing") == model


def test_ttl_expired_rows_and_dropped_partitions_leave_the_disk(live):
    dep, client = live
    create_flat_collection(client, "aged", DIM, num_shards=1)
    client.alter_collection_properties("aged", {"collection.ttl.seconds": "6"})
    client.insert("aged", _rows(range(100), 0, 0))
    client.flush("aged")
    client.create_partition("aged", "gone")
    client.insert("aged", _rows(range(1000, 1050), 1, 1), partition_name="gone")
    client.flush("aged")
    time.sleep(6.5)  # the first rows expire
    client.release_partitions("aged", ["gone"])
    client.drop_partition("aged", "gone")
    client.insert("aged", _rows(range(200, 240), 2, 2))  # fresh rows, well inside the TTL
    client.flush("aged")
    assert _stored(dep, "aged", ROWS).num_rows == 190

    _compact(client, "aged")
    rows = _stored(dep, "aged", ROWS)
    assert sorted(rows.column("id").to_pylist()) == list(range(200, 240))
    assert set(rows.column("_partition").to_pylist()) == {"_default"}
    assert _stored(dep, "aged", DELETES).num_rows == 0  # the partition tombstone hides nothing now
    assert _all(client, "aged") == dict.fromkeys(range(200, 240), 2)


@pytest.mark.parametrize(
    "moment",
    ["compaction writing", "compacted collection="],  # writing its files; committed, not yet announced
)
def test_kill9_of_the_compacting_indexer_loses_and_duplicates_nothing(deployment, moment):
    deployment.env.update(ENV, WALVUS_SEAL_IDLE_SECONDS="600")
    deployment.start("streams", "indexer", "gateway")
    client = MilvusClient(deployment.uri)
    try:
        model = _fill(client, "crash")
        before = _searches(client, "crash")
        log = deployment.root / "indexer.log"
        cid = client.compact("crash")
        deadline = time.monotonic() + 60
        while moment not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, deployment.log_tail("indexer")
            time.sleep(0.005)
        deployment.kill("indexer")  # mid-compaction
        committed = _compaction_commits(deployment, "crash")
        if moment == "compacted collection=":
            assert committed == 1
        rows = _stored(deployment, "crash", ROWS)
        _no_duplicate_rows(rows)  # old files or new ones live, never both
        assert _all(client, "crash") == model
        deployment.start("indexer")  # the request is still pending: the compaction runs again
        deadline = time.monotonic() + 90
        while client.get_compaction_state(cid) != "Completed":
            assert time.monotonic() < deadline, deployment.log_tail("indexer")
            time.sleep(0.2)
        rows = _stored(deployment, "crash", ROWS)
        _no_duplicate_rows(rows)
        assert rows.num_rows == len(model)
        assert _compaction_commits(deployment, "crash") == 1  # a committed compaction is not redone
        _wait_swapped(client, "crash")
        assert _all(client, "crash") == model
        assert _searches(client, "crash") == before
        deployment.stop("gateway")  # a searcher that loads after the compaction
        deployment.start("gateway")
        client.close()
        client = MilvusClient(deployment.uri)
        client.load_collection("crash")  # waits for the reload the restart started
        assert _all(client, "crash") == model
        assert _searches(client, "crash") == before
    finally:
        client.close()


def test_small_segments_are_merged_by_the_policy_alone(deployment):
    deployment.env.update(
        ENV,
        WALVUS_COMPACTION_CHECK_SECONDS="1",
        WALVUS_COMPACTION_SMALL_SEGMENTS="3",
        WALVUS_SEAL_IDLE_SECONDS="600",
    )
    deployment.start("streams", "indexer", "gateway")
    client = MilvusClient(deployment.uri)
    try:
        create_flat_collection(client, "auto", DIM, num_shards=1)
        model: dict[int, int] = {}
        for b in range(3):
            client.insert("auto", _rows(range(b * 50, (b + 1) * 50), b, b))
            model.update(dict.fromkeys(range(b * 50, (b + 1) * 50), b))
            client.flush("auto")
        s = _wait_swapped(client, "auto")
        assert s["sealed_segments"] == 1
        assert _all(client, "auto") == model
    finally:
        client.close()
