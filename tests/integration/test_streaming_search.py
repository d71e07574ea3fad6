"""Growing data under streaming writes, through pymilvus against a real walvus: the interim index
of growing rows, seals by row count and by age while writes continue, and the hand-over from
growing to sealed segments while searches run."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from tests.integration.search_support import running, stats, wait_indexed
from walvus.storage import ROWS

DIM = 16
HNSW = {"M": 16, "efConstruction": 64}


def _create(client: MilvusClient, name: str, **extra_vectors: tuple[DataType, str, str]) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("n", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="HNSW", metric_type="L2", params=HNSW)
    for fname, (dtype, itype, metric) in extra_vectors.items():
        schema.add_field(fname, dtype, dim=64 if dtype == DataType.BINARY_VECTOR else DIM)
        idx.add_index(fname, index_type=itype, metric_type=metric, params=HNSW if itype == "HNSW" else {})
    client.create_collection(name, schema=schema, index_params=idx, consistency_level="Strong")


def _rows(ids: np.ndarray, vectors: np.ndarray) -> list[dict]:
    return [{"id": int(i), "vec": v.tolist(), "n": int(i) % 7} for i, v in zip(ids, vectors, strict=True)]


def _exact_l2(queries: np.ndarray, live: dict[int, np.ndarray], k: int) -> list[list[int]]:
    ids = np.array(sorted(live))
    x = np.stack([live[i] for i in ids])
    d = ((queries[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return [ids[np.argsort(row, kind="stable")[:k]].tolist() for row in d]


def _wait_interim(client: MilvusClient, name: str, rows: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while stats(client, name).get("interim_indexed_rows", 0) < rows:
        if time.monotonic() > deadline:
            raise TimeoutError(f"interim index of {name} holds fewer than {rows} rows: {stats(client, name)}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def live(kafka_bootstrap, tmp_path_factory):
    with running(kafka_bootstrap, tmp_path_factory.mktemp("interim"), WALVUS_INTERIM_MIN_ROWS="200") as pair:
        yield pair


def test_growing_rows_through_the_interim_index_match_exact_search(live):
    _, client = live
    _create(client, "grow")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, DIM)).astype(np.float32)
    for s in range(0, 3000, 100):
        client.insert("grow", _rows(np.arange(s, s + 100), vectors[s : s + 100]))
    live_rows = {i: vectors[i] for i in range(3000)}
    # upserts and deletes of keys that sit in growing chunks already indexed
    _wait_interim(client, "grow", 3000)
    upd = np.arange(0, 3000, 10)
    new = rng.standard_normal((len(upd), DIM)).astype(np.float32)
    client.upsert("grow", _rows(upd, new))
    live_rows.update({int(i): v for i, v in zip(upd, new, strict=True)})
    gone = list(range(5, 3000, 50))
    client.delete("grow", ids=gone)
    for i in gone:
        live_rows.pop(i, None)
    _wait_interim(client, "grow", 3000 + len(upd))
    s = stats(client, "grow")
    assert s["growing_rows"] == 3000 + len(upd) and s.get("sealed_segments", 0) == 0

    queries = np.concatenate([new[:10], vectors[gone[:5]], rng.standard_normal((15, DIM)).astype(np.float32)])
    expected = _exact_l2(queries, live_rows, 10)
    res = client.search(
        "grow", queries.tolist(), limit=10, search_params={"metric_type": "L2", "params": {"ef": 1000}}
    )
    got = [[h["id"] for h in hits] for hits in res]
    assert got == expected  # generous ef: the interim index answers as exact search does
    for i, hits in enumerate(res[:10]):  # an upserted key is found in its new version only
        assert hits[0]["id"] == int(upd[i]) and hits[0]["distance"] == pytest.approx(0.0, abs=1e-5)
    for hits in res[10:15]:
        assert not set(h["id"] for h in hits) & set(gone)
    # the default ef is approximate but must still see nearly everything
    res = client.search("grow", queries.tolist(), limit=10)
    found = sum(len(set(h["id"] for h in hits) & set(e)) for hits, e in zip(res, expected, strict=True))
    assert found / (10 * len(queries)) >= 0.9
    filtered = client.search("grow", queries[:5].tolist(), limit=10, filter="n == 3")
    for hits in filtered:
        assert hits and all(h["entity"].get("n", 3) == 3 or h["id"] % 7 == 3 for h in hits)


def test_interim_index_off_by_collection_property(live):
    _, client = live
    _create(client, "noint")
    client.alter_collection_properties("noint", {"interim_index.enabled": "false"})
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1000, DIM)).astype(np.float32)
    client.insert("noint", _rows(np.arange(1000), vectors))
    time.sleep(1.0)
    assert stats(client, "noint").get("interim_indexed_rows", 0) == 0
    res = client.search("noint", vectors[:5].tolist(), limit=3)
    assert [hits[0]["id"] for hits in res] == [0, 1, 2, 3, 4]
    with pytest.raises(Exception, match="interim_index.enabled"):
        client.alter_collection_properties("noint", {"interim_index.enabled": "maybe"})


def test_float16_and_binary_vectors_stay_exact_on_growing_data(live):
    _, client = live
    _create(
        client,
        "exactish",
        f16=(DataType.FLOAT16_VECTOR, "HNSW", "L2"),
        bin=(DataType.BINARY_VECTOR, "BIN_IVF_FLAT", "HAMMING"),
    )
    rng = np.random.default_rng(2)
    n = 1500
    vec = rng.standard_normal((n, DIM)).astype(np.float32)
    f16 = rng.standard_normal((n, DIM)).astype(np.float16)
    bits = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    rows = [
        {"id": i, "vec": vec[i].tolist(), "n": i, "f16": f16[i], "bin": bits[i].tobytes()} for i in range(n)
    ]
    for s in range(0, n, 300):
        client.insert("exactish", rows[s : s + 300])
    _wait_interim(client, "exactish", n)  # the FLOAT_VECTOR field only
    assert stats(client, "exactish")["interim_indexed_rows"] == n
    q = rng.standard_normal((5, DIM)).astype(np.float32)
    d16 = ((q[:, None, :] - f16.astype(np.float32)[None]) ** 2).sum(-1)
    res = client.search(
        "exactish", q.tolist(), anns_field="f16", limit=10, search_params={"metric_type": "L2"}
    )
    for qi, hits in enumerate(res):
        assert [h["id"] for h in hits] == np.argsort(d16[qi], kind="stable")[:10].tolist()
    qb = rng.integers(0, 256, (3, 8), dtype=np.uint8)
    ham = np.unpackbits(qb[:, None, :] ^ bits[None], axis=-1).sum(-1)
    res = client.search(
        "exactish",
        [b.tobytes() for b in qb],
        anns_field="bin",
        limit=10,
        search_params={"metric_type": "HAMMING"},
    )
    for qi, hits in enumerate(res):
        assert [h["distance"] for h in hits] == sorted(ham[qi].tolist())[:10]
        assert all(ham[qi][h["id"]] == h["distance"] for h in hits)


def _reasons(dep, client: MilvusClient, name: str) -> list[str]:
    cid = client.describe_collection(name)["collection_id"]
    dt = dep.api().store.open(cid, ROWS)
    return [str(h.get("reason", "")) for h in dt.history()] if dt is not None else []


def test_seals_by_rows_and_by_age_under_continuous_writes_hand_over_without_gap_or_double(
    kafka_bootstrap, tmp_path
):
    env = {
        "WALVUS_SEAL_MAX_ROWS": "1500",
        "WALVUS_SEAL_MAX_AGE_SECONDS": "4",
        "WALVUS_INTERIM_MIN_ROWS": "200",
    }
    with running(kafka_bootstrap, tmp_path, **env) as (dep, client):
        _create(client, "stream")
        writer = MilvusClient(dep.uri)
        rng = np.random.default_rng(3)
        acked: list[int] = []
        lock = threading.Lock()
        done = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            try:
                base = 0
                for _ in range(16):  # fast: 500-row records, a rows seal every third record
                    batch = np.arange(base, base + 500)
                    writer.insert("stream", _rows(batch, rng.standard_normal((500, DIM)).astype(np.float32)))
                    with lock:
                        acked.extend(batch.tolist())
                    base += 500
                end = time.monotonic() + 10
                while time.monotonic() < end:  # slow: 20 rows every 0.25 s, sealed by age only
                    batch = np.arange(base, base + 20)
                    writer.insert("stream", _rows(batch, rng.standard_normal((20, DIM)).astype(np.float32)))
                    with lock:
                        acked.extend(batch.tolist())
                    base += 20
                    time.sleep(0.25)
            except BaseException as exc:
                errors.append(exc)
            finally:
                done.set()

        t = threading.Thread(target=write)
        t.start()
        checks = 0
        try:
            while not done.is_set() or checks < 5:
                with lock:
                    before = len(acked)
                    probe = acked[-1] if acked else None
                count = client.query("stream", filter="", output_fields=["count(*)"])[0]["count(*)"]
                with lock:
                    after = len(acked)
                # every acknowledged row counts; rows of an insert still in flight may count too
                assert before <= count <= after + 500, (before, count, after)
                if probe is not None:
                    got = client.query("stream", filter=f"id == {probe}", output_fields=["vec"])
                    assert len(got) == 1
                    hits = client.search("stream", [got[0]["vec"]], limit=10)[0]
                    ids = [h["id"] for h in hits]
                    assert ids[0] == probe and len(ids) == len(set(ids))
                s = stats(client, "stream")  # a seal replaces growing rows only once it is indexed
                assert s.get("indexed_segments", 0) == s.get("sealed_segments", 0), s
                checks += 1
        finally:
            t.join(60)
            writer.close()
        assert not errors, errors
        everything = client.query("stream", filter="id >= 0", output_fields=["id"], limit=16_384)
        assert sorted(r["id"] for r in everything) == sorted(acked)
        reasons = _reasons(dep, client, "stream")
        assert "rows" in reasons and "age" in reasons, reasons
        assert "idle" not in reasons
        client.flush("stream")
        final = wait_indexed(client, "stream", 1)  # hand-overs wait for the indexer
        assert final["sealed_segments"] >= 3 and final["row_count"] == len(acked), final
