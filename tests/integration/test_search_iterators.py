"""pymilvus's query_iterator and search_iterator (v2) over 50,000 rows: every row exactly once,
also while a writer inserts new rows (those may or may not appear, but nothing twice)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.integration.search_support import create_flat_collection, running, wait_indexed
from tests.procs import LAYOUTS

pytestmark = pytest.mark.integration
N = 50_000
DIM = 4
NAME = "iter"


@pytest.fixture(scope="module", params=LAYOUTS)
def live(request, kafka_bootstrap, tmp_path_factory):
    """One collection of N rows with even ids 0, 2, ..., 2(N-1), flushed and indexed (FLAT, exact)."""
    with running(kafka_bootstrap, tmp_path_factory.mktemp("search-iter"), request.param) as (dep, client):
        create_flat_collection(client, NAME, DIM, num_shards=2, consistency_level="Strong")
        x = np.random.default_rng(20).random((N, DIM), dtype=np.float32)
        for lo in range(0, N, 10_000):
            hi = min(N, lo + 10_000)
            client.insert(NAME, [{"id": 2 * i, "vec": x[i].tolist(), "n": i} for i in range(lo, hi)])
        client.flush(NAME)
        wait_indexed(client, NAME, 1)
        yield dep, client


INITIAL = set(range(0, 2 * N, 2))


class Writer:
    """Inserts new rows (odd ids, spread over the key range) in a thread: 20 batches of 100."""

    def __init__(self, uri: str, seed: int) -> None:  # seed 1 or 2: ids 4i + 1 or 4i + 3, never reused
        from pymilvus import MilvusClient

        self.client = MilvusClient(uri)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.inserted: set[int] = set()
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for _ in range(20):
                if self.stop.is_set():
                    return
                ids = {
                    int(i) * 4 + 2 * self.seed - 1 for i in self.rng.integers(0, N // 2, 100)
                } - self.inserted
                rows = [
                    {"id": i, "vec": self.rng.random(DIM, dtype=np.float32).tolist(), "n": -1}
                    for i in sorted(ids)
                ]
                self.client.insert(NAME, rows)
                self.inserted |= ids
                time.sleep(0.05)
        except BaseException as exc:
            self.errors.append(exc)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(60)
        self.client.close()
        assert not self.errors, self.errors


def _drain(it) -> list:
    out = []
    try:
        while True:
            page = it.next()
            if not page:
                break
            out.extend(page)
    finally:
        it.close()
    return out


def _check_once(ids: list[int], initial: set[int], new: set[int]) -> None:
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} rows seen twice"
    got = set(ids)
    assert initial <= got, f"{len(initial - got)} initial rows never seen"
    assert got - initial <= new, f"unknown rows {sorted(got - initial - new)[:5]}"


@pytest.mark.parametrize("batch", [1000, 7])
def test_query_iterator_sees_every_row_once(live, batch):
    _, client = live
    t0 = time.monotonic()
    rows = _drain(client.query_iterator(NAME, batch_size=batch, filter="n >= 0", output_fields=["id"]))
    elapsed = time.monotonic() - t0
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids)  # pages come in primary-key order
    _check_once(ids, INITIAL, set())
    assert all(len(r) >= 1 for r in rows)
    print(f"query_iterator batch={batch}: {len(ids)} rows in {elapsed:.1f}s")


def test_query_iterator_while_writing(live):
    dep, client = live
    existing = INITIAL | _already_written(client)
    with Writer(dep.uri, 1) as w:
        rows = _drain(client.query_iterator(NAME, batch_size=7, output_fields=["id"]))
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids)
    _check_once(ids, existing, w.inserted)


def _already_written(client) -> set[int]:
    """Odd ids from an earlier writer (tests share the collection)."""
    got = client.query(NAME, filter="n == -1", output_fields=["id"], limit=16_384)
    return {r["id"] for r in got}


# batch 7 over all 50,000 rows is ~7,150 round trips: ~33 s on a quiet 2-core machine (~5 ms a
# page), up to ~100 s when the machine is busy. The searcher processes' layout pages through the
# same gateway code, one hop more a page: there batch 7 walks the rows a filter keeps (one in five)
@pytest.mark.parametrize("batch", [1000, 7])
def test_search_iterator_sees_every_row_once(live, batch):
    dep, client = live
    flt = "n % 5 == 0" if batch == 7 and dep.layout == "remote" else None
    existing = INITIAL | _already_written(client)
    if flt is not None:
        existing = {i for i in existing if i % 2 == 0 and (i // 2) % 5 == 0}  # n = id / 2 on even ids
    q = [[0.5] * DIM]
    t0 = time.monotonic()
    hits = _drain(
        client.search_iterator(
            NAME,
            q,
            batch_size=batch,
            limit=-1,
            filter=flt,
            search_params={"metric_type": "L2"},
            output_fields=["n"],
        )
    )
    elapsed = time.monotonic() - t0
    print(f"search_iterator batch={batch} filter={flt}: {len(hits)} rows in {elapsed:.1f}s")
    ids = [h["id"] for h in hits]
    _check_once(ids, existing, set())
    assert len(ids) == len(existing)
    d = [h["distance"] for h in hits]
    assert all(a <= b for a, b in zip(d, d[1:], strict=False)), "pages must come nearest first"


def test_search_iterator_while_writing(live):
    dep, client = live
    existing = INITIAL | _already_written(client)
    q = [[0.25] * DIM]
    with Writer(dep.uri, 2) as w:
        hits = _drain(client.search_iterator(NAME, q, batch_size=1000, search_params={"metric_type": "L2"}))
    _check_once([h["id"] for h in hits], existing, w.inserted)


def test_search_iterator_with_filter_and_limit(live):
    _, client = live
    q = [[0.75] * DIM]
    hits = _drain(
        client.search_iterator(
            NAME,
            q,
            batch_size=333,
            limit=5000,
            filter="n % 3 == 0",
            search_params={"metric_type": "L2"},
            output_fields=["n"],
        )
    )
    ids = [h["id"] for h in hits]
    assert len(ids) == 5000 == len(set(ids))
    assert all(h["entity"]["n"] % 3 == 0 for h in hits)
    top = client.search(NAME, q, limit=5000, filter="n % 3 == 0")[0]
    # the iterator's 5000 are the 5000 nearest (ties at the cut aside)
    cut = top[-1]["distance"]
    assert {h["id"] for h in top if h["distance"] < cut} <= set(ids)
    assert max(h["distance"] for h in hits) == pytest.approx(cut, abs=1e-6)


def test_query_iterator_pins_a_snapshot(live):
    """Pages after the first read the rows live when the iterator started: later upserts, deletes
    and inserts neither show up nor hide the rows as they were."""
    _, client = live
    name = "snap"
    create_flat_collection(client, name, DIM, num_shards=2)
    rows = [{"id": i, "vec": [float(i % 7)] * DIM, "n": i} for i in range(3000)]
    client.insert(name, rows[:1500])
    client.flush(name)  # half sealed, half growing
    client.insert(name, rows[1500:])
    it = client.query_iterator(name, batch_size=50, output_fields=["id", "n"], consistency_level="Strong")
    seen = list(it.next())
    client.upsert(name, [{"id": i, "vec": [9.0] * DIM, "n": -5} for i in range(0, 3000, 3)])
    client.delete(name, ids=list(range(1, 3000, 7)))
    client.insert(name, [{"id": i, "vec": [1.0] * DIM, "n": -9} for i in range(5000, 5300)])
    assert client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    while True:
        page = it.next()
        if not page:
            break
        seen.extend(page)
    it.close()
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == set(range(3000))
    assert all(r["n"] == r["id"] for r in seen)  # the values as they were at the start
    # a new iterator sees the new state
    after = _drain(client.query_iterator(name, batch_size=1000, output_fields=["id", "n"]))
    deleted = set(range(1, 3000, 7))
    assert {r["id"] for r in after} == (set(range(3000)) - deleted) | set(range(5000, 5300))
    client.drop_collection(name)
