"""Churn: hundreds of collections of assorted schemas go through their whole life at once, from
several clients, while a steady writer runs. Real broker, Delta, FAISS, processes and pymilvus.

At the end every surviving collection has its indexes built and exact counts, the steady writer
lost nothing, no worker restarted or logged an unhandled exception, and the gateway's request
counters show the refusals the clients provoked.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient, MilvusException

pytestmark = pytest.mark.integration
COLLECTIONS = int(os.environ.get("WALVUS_TEST_CHURN_COLLECTIONS", "200"))
CLIENTS = 4
ROWS = 120  # per collection, in two inserts
DELETED = 10
DIM = 8
BITS = 32


@dataclass
class Kind:
    """One schema of the mix: how to build it, its index parameters, and rows for it."""

    name: str
    vector: str  # the field searched
    build: Callable[[MilvusClient], tuple[object, object]]
    rows: Callable[[np.random.Generator, np.ndarray], list[dict]]
    search: Callable[[np.random.Generator], object]
    add_field: bool = False
    partitions: tuple[str, ...] = ()


def _floats(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random((n, DIM), dtype=np.float32)


def _bits(rng: np.random.Generator, n: int) -> list[bytes]:
    return [bytes(b) for b in rng.integers(0, 256, size=(n, BITS // 8), dtype=np.uint8)]


def _schema(client: MilvusClient, **kw: object):  # noqa: ANN202
    schema = client.create_schema(auto_id=False, **kw)
    schema.add_field("id", DataType.INT64, is_primary=True)
    return schema


def _float_hnsw(client: MilvusClient) -> tuple[object, object]:
    schema = _schema(client, enable_dynamic_field=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("note", DataType.VARCHAR, max_length=32, nullable=True)
    schema.add_field("level", DataType.INT32, default_value=7)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="HNSW", metric_type="L2", params={"M": 8, "efConstruction": 32})
    return schema, idx


def _half(dtype: DataType, index: str) -> Callable[[MilvusClient], tuple[object, object]]:
    def build(client: MilvusClient) -> tuple[object, object]:
        schema = _schema(client)
        schema.add_field("vec", dtype, dim=DIM)
        idx = client.prepare_index_params()
        idx.add_index("vec", index_type=index, metric_type="IP", params={"nlist": 4})
        return schema, idx

    return build


def _binary(client: MilvusClient) -> tuple[object, object]:
    schema = _schema(client)
    schema.add_field("vec", DataType.BINARY_VECTOR, dim=BITS)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="BIN_IVF_FLAT", metric_type="HAMMING", params={"nlist": 4})
    return schema, idx


def _partition_key(client: MilvusClient) -> tuple[object, object]:
    schema = _schema(client)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("tenant", DataType.INT64, is_partition_key=True)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="IVF_FLAT", metric_type="COSINE", params={"nlist": 4})
    return schema, idx


def _two_vectors(client: MilvusClient) -> tuple[object, object]:
    schema = _schema(client)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("bits", DataType.BINARY_VECTOR, dim=BITS)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    idx.add_index("bits", index_type="BIN_FLAT", metric_type="JACCARD")
    return schema, idx


def _float_rows(rng: np.random.Generator, ids: np.ndarray) -> list[dict]:
    vecs = _floats(rng, len(ids))
    return [{"id": int(i), "vec": vecs[k].tolist()} for k, i in enumerate(ids)]


def _half_rows(dtype: str) -> Callable[[np.random.Generator, np.ndarray], list[dict]]:
    def rows(rng: np.random.Generator, ids: np.ndarray) -> list[dict]:
        vecs = _floats(rng, len(ids))
        if dtype == "float16":
            return [{"id": int(i), "vec": vecs[k].astype(np.float16)} for k, i in enumerate(ids)]
        high = (vecs.view(np.uint32) >> 16).astype("<u2")  # bfloat16 as bytes: the high half of float32
        return [{"id": int(i), "vec": high[k].tobytes()} for k, i in enumerate(ids)]

    return rows


def _dynamic_rows(rng: np.random.Generator, ids: np.ndarray) -> list[dict]:
    rows = _float_rows(rng, ids)
    for r in rows:  # every other row: a null note, the default level, and a dynamic key
        if r["id"] % 2:
            r.update(note=None, colour="red")
        else:
            r.update(note=f"n{r['id']}", level=int(r["id"]) % 5)
    return rows


def _binary_rows(rng: np.random.Generator, ids: np.ndarray) -> list[dict]:
    return [{"id": int(i), "vec": v} for i, v in zip(ids, _bits(rng, len(ids)), strict=True)]


def _tenant_rows(rng: np.random.Generator, ids: np.ndarray) -> list[dict]:
    return [{**r, "tenant": int(r["id"]) % 5} for r in _float_rows(rng, ids)]


def _two_vector_rows(rng: np.random.Generator, ids: np.ndarray) -> list[dict]:
    bits = _bits(rng, len(ids))
    return [{**r, "bits": bits[k]} for k, r in enumerate(_float_rows(rng, ids))]


KINDS = [
    Kind("float_hnsw", "vec", _float_hnsw, _dynamic_rows, lambda g: [_floats(g, 1)[0].tolist()]),
    Kind(
        "float16",
        "vec",
        _half(DataType.FLOAT16_VECTOR, "HNSW"),
        _half_rows("float16"),
        lambda g: [_floats(g, 1)[0].astype("float16")],
    ),  # fmt: skip
    Kind(
        "bfloat16",
        "vec",
        _half(DataType.BFLOAT16_VECTOR, "IVF_FLAT"),
        _half_rows("bfloat16"),
        lambda g: [_floats(g, 1)[0].tolist()],
    ),  # fmt: skip
    Kind("binary", "vec", _binary, _binary_rows, lambda g: [_bits(g, 1)[0]]),
    Kind(
        "partitions",
        "vec",
        _float_hnsw,
        _dynamic_rows,
        lambda g: [_floats(g, 1)[0].tolist()],
        partitions=("p1", "p2"),
    ),  # fmt: skip
    Kind("partition_key", "vec", _partition_key, _tenant_rows, lambda g: [_floats(g, 1)[0].tolist()]),
    Kind(
        "added_field",
        "vec",
        _float_hnsw,
        _dynamic_rows,
        lambda g: [_floats(g, 1)[0].tolist()],
        add_field=True,
    ),  # fmt: skip
    Kind("two_vectors", "vec", _two_vectors, _two_vector_rows, lambda g: [_floats(g, 1)[0].tolist()]),
]


@dataclass
class Outcome:
    kept: dict[str, Kind] = field(default_factory=dict)
    dropped: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # method -> refusals provoked

    def refusal(self, method: str) -> None:
        self.refused[method] = self.refused.get(method, 0) + 1


def _refused(outcome: Outcome, method: str, call: Callable[..., object], *args: object, **kw: object) -> None:
    try:
        call(*args, **kw)
    except MilvusException:
        outcome.refusal(method)
    else:
        raise AssertionError(f"{method} should have been refused")


def _count(client: MilvusClient, name: str, **kw: object) -> int:
    got = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong", **kw)
    return int(got[0]["count(*)"])


def _life(uri: str, names: list[tuple[str, Kind]], seed: int, outcome: Outcome, lock: threading.Lock) -> None:
    """Create, fill, index, release, reload and (two in three) drop each collection."""
    client = MilvusClient(uri)
    rng = np.random.default_rng(seed)
    try:
        for n, (name, kind) in enumerate(names):
            schema, idx = kind.build(client)
            client.create_collection(name, schema=schema, index_params=idx)  # loads it too
            for p in kind.partitions:
                client.create_partition(name, p)
            ids = np.arange(ROWS, dtype=np.int64)
            parts = [{"partition_name": p} for p in kind.partitions] or [{}, {}]
            for half, part in zip(np.array_split(ids, 2), parts, strict=True):
                client.insert(name, kind.rows(rng, half), **part)
            if kind.add_field:
                client.add_collection_field(name, "extra", DataType.INT64, nullable=True)
                client.upsert(name, [{**r, "extra": 1} for r in kind.rows(rng, ids[:5])])
            else:
                client.upsert(name, kind.rows(rng, ids[:5]), **parts[0])
            client.delete(name, filter=f"id in {ids[-DELETED:].tolist()}")
            extra = kind.rows(rng, np.array([10**6]))
            _refused(outcome, "Insert", client.insert, name, extra, partition_name="missing")
            _refused(outcome, "Query", client.query, name, filter="id >>> 3")
            assert _count(client, name) == ROWS - DELETED, name
            hits = client.search(
                name, data=kind.search(rng), anns_field=kind.vector, limit=3, consistency_level="Strong"
            )
            assert len(hits[0]) == 3, name
            client.release_collection(name)
            client.load_collection(name)
            assert _count(client, name) == ROWS - DELETED, name
            if kind.partitions:
                client.release_partitions(name, [kind.partitions[0]])
                assert _count(client, name, partition_names=[kind.partitions[1]]) > 0
                client.load_partitions(name, [kind.partitions[0]])
            if n % 3:
                client.drop_collection(name)
                with lock:
                    outcome.dropped += 1
            else:
                client.release_collection(name)  # kept, released: counted from storage at the end
                with lock:
                    outcome.kept[name] = kind
    finally:
        client.close()


class SteadyWriter(threading.Thread):
    """Inserts small batches with fresh keys until stopped; remembers the acknowledged keys."""

    def __init__(self, uri: str, name: str) -> None:
        super().__init__(name="steady-writer", daemon=True)
        self.client = MilvusClient(uri)
        self.name_ = name
        self.acked: list[int] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        rng = np.random.default_rng(99)
        nxt = 0
        while not self.stop.is_set():
            ids = np.arange(nxt, nxt + 20, dtype=np.int64)
            nxt += 20
            try:
                self.client.insert(self.name_, _float_rows(rng, ids))
            except MilvusException as exc:  # nothing may fail here; recorded, asserted on later
                self.failures.append(str(exc))
            else:
                self.acked += ids.tolist()
            time.sleep(0.05)


def _wait_index(client: MilvusClient, name: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for index in client.list_indexes(name):
        while True:
            desc = client.describe_index(name, index)
            if desc["state"] == "Finished" and desc["pending_index_rows"] == 0:
                break
            assert desc["state"] != "Failed", (name, desc)
            assert time.monotonic() < deadline, (name, desc)
            time.sleep(0.2)


def _metrics(port: str) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    pat = re.compile(r'^walvus_gateway_requests_total\{code="(\d+)",method="(\w+)"\} ([0-9.e+]+)$', re.M)
    return {(m, c): float(v) for c, m, v in pat.findall(text)}


def test_hundreds_of_collections_churn_while_a_steady_writer_runs(deployment) -> None:
    deployment.start("streams", "indexer", "gateway")
    admin = MilvusClient(deployment.uri)
    schema, idx = _float_hnsw(admin)
    admin.create_collection("steady", schema=schema, index_params=idx)
    writer = SteadyWriter(deployment.uri, "steady")
    writer.start()

    plan = [(f"churn{i}", KINDS[i % len(KINDS)]) for i in range(COLLECTIONS)]
    outcome, lock = Outcome(), threading.Lock()
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [
            pool.submit(_life, deployment.uri, plan[c::CLIENTS], c, outcome, lock) for c in range(CLIENTS)
        ]
        for f in futures:
            f.result()
    churn_seconds = time.monotonic() - started
    writer.stop.set()
    writer.join(60)
    writer.client.close()

    assert writer.failures == []
    assert outcome.dropped + len(outcome.kept) == COLLECTIONS
    listed = set(admin.list_collections())
    assert listed == {"steady", *outcome.kept}

    # every surviving collection: indexes built on all its sealed data, exact counts
    admin.flush("steady")
    assert _count(admin, "steady") == len(writer.acked)
    sample = np.random.default_rng(1).choice(writer.acked, size=min(500, len(writer.acked)), replace=False)
    got = admin.query(
        "steady", filter=f"id in {sample.tolist()}", output_fields=["id"], consistency_level="Strong"
    )
    assert sorted(r["id"] for r in got) == sorted(sample.tolist())
    admin.release_collection("steady")  # and in Delta, what a restarted searcher would load
    assert admin.get_collection_stats("steady")["row_count"] == len(writer.acked)
    for name in outcome.kept:
        admin.flush(name)
        assert admin.get_collection_stats(name)["row_count"] == ROWS - DELETED, name
    for name in ["steady", *outcome.kept]:
        _wait_index(admin, name)
    for name in list(outcome.kept)[:: max(1, len(outcome.kept) // 8)]:  # a sample, loaded again
        admin.load_collection(name)
        assert _count(admin, name) == ROWS - DELETED, name
        admin.release_collection(name)
    admin.close()

    # no worker restarted or logged an unhandled exception
    for name in ("streams", "indexer", "gateway"):
        assert deployment.procs[name].poll() is None, deployment.log_tail(name)
        log = (deployment.root / f"{name}.log").read_text(errors="replace")
        assert "Traceback" not in log, f"{name} logged an exception:\n{_around(log, 'Traceback')}"
        assert "unexpected error" not in log, _around(log, "unexpected error")

    # the refusals are visible on the gateway's request counters, by method and Milvus code
    counts = _metrics(deployment.env["WALVUS_METRICS_PORT"])
    for method, provoked in outcome.refused.items():
        refused = sum(v for (m, code), v in counts.items() if m == method and code != "0")
        assert refused >= provoked, (method, refused, provoked)
    print(
        f"churn: {COLLECTIONS} collections in {churn_seconds:.0f}s by {CLIENTS} clients, "
        f"{len(outcome.kept)} kept, steady writer acked {len(writer.acked)} rows"
    )


def _around(text: str, needle: str, lines: int = 30) -> str:
    at = text.find(needle)
    return "\n".join(text[at:].splitlines()[:lines]) if at >= 0 else ""
