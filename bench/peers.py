"""Search benchmark targets behind one small interface.

Every target takes the same data, the same index (HNSW, M=16, efConstruction=200, COSINE) and
the same search parameters (ef=64, top-k 10):

    peer.setup(data)                          -> seconds until searchable (insert+flush+index+load)
    peer.search(queries, nq, consistency)     -> (nq, <=k) ids of the first nq queries
    peer.insert(ids, vectors)                 -> None (one write, for freshness trials)
    peer.clone()                              -> a handle with its own client, for another thread
    peer.remote_uri                           -> the server's URI when client processes can reach it
    peer.close()                              -> stop everything it started

Targets: ``FaissPeer`` (raw FAISS in process, the limit), ``FloorPeer`` (gRPC servers whose
Search does nothing: what pymilvus and Python gRPC alone cost), ``WalvusPeer`` (a local walvus
deployment through pymilvus), ``MilvusLitePeer`` (milvus-lite, in process) and ``MilvusPeer``
(the embedded Milvus 2.3.5 standalone server from the ``milvus`` wheel).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

M, EF_CONSTRUCTION, EF_SEARCH, TOP_K, METRIC = 16, 200, 64, 10, "COSINE"
COLLECTION = "bench_search"
INSERT_BATCH = 10_000


def run_params(**extra: Any) -> dict[str, Any]:
    """The index and search parameters every search benchmark uses, as its results record them."""
    return {"index": "HNSW", "M": M, "efConstruction": EF_CONSTRUCTION, "ef": EF_SEARCH, "metric": METRIC,
            "top_k": TOP_K, **extra}  # fmt: skip


class Peer:
    """The common interface; ``stats`` collects setup phases and notes for the report."""

    name = "?"
    index_used = "?"
    honours_consistency = True
    answers_queries = True  # False: a server that only measures the protocol's cost (no recall)
    remote_uri: str | None = None  # a server other processes can reach: concurrent clients are processes

    def __init__(self) -> None:
        self.stats: dict[str, Any] = {}
        self.notes: list[str] = []

    def setup(self, data: np.ndarray) -> float:
        raise NotImplementedError

    def search(self, queries: np.ndarray | list, nq: int, consistency: str = "Strong") -> list[list[int]]:
        raise NotImplementedError

    def insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def clone(self) -> Peer:
        return self

    def server_search_seconds(self) -> tuple[float, int] | None:
        """(total seconds, calls) the server itself spent in Search so far, where it exposes it."""
        return None

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------
class FaissPeer(Peer):
    """faiss ``IndexHNSWFlat`` on the unit vectors with inner product (= COSINE), in process."""

    name = "faiss"
    index_used = f"IndexHNSWFlat IP on unit vectors (M={M}, efConstruction={EF_CONSTRUCTION})"
    honours_consistency = False

    def setup(self, data: np.ndarray) -> float:
        import faiss

        self.faiss = faiss
        self.index = faiss.IndexHNSWFlat(data.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        self.params = faiss.SearchParametersHNSW(efSearch=EF_SEARCH)
        self.labels = np.arange(len(data), dtype=np.int64)  # HNSW labels are row numbers: ids map 1:1
        t0 = time.perf_counter()
        self.index.add(np.ascontiguousarray(data, dtype=np.float32))
        ready = time.perf_counter() - t0
        self.stats.update(index_s=ready, ready_s=ready, insert_rows_s=None)
        return ready

    def search(self, queries: np.ndarray | list, nq: int, consistency: str = "Strong") -> list[list[int]]:
        q = np.ascontiguousarray(np.asarray(queries[:nq], dtype=np.float32))
        _, ids = self.index.search(q, TOP_K, params=self.params)
        return self.labels[ids].tolist()

    def insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.labels = np.concatenate([self.labels, np.asarray(ids, dtype=np.int64)])


# ------------------------------------------------------------------------------------------
class PymilvusPeer(Peer):
    """Shared pymilvus code: the same schema, batches, index and search calls for every server."""

    uri = ""
    collection_properties: dict[str, str] = {}  # set right after the collection is created
    shards = 1

    def __init__(self, client: Any = None) -> None:
        super().__init__()
        self.client = client

    def _connect(self) -> Any:
        from pymilvus import MilvusClient

        return MilvusClient(self.uri, dedicated=True)

    def clone(self) -> PymilvusPeer:
        """A plain client handle on the same server (closing it closes only its client)."""
        twin = PymilvusPeer(self._connect())
        twin.uri, twin.name, twin.index_used = self.uri, self.name, self.index_used
        return twin

    def _create(self, dim: int) -> None:
        from pymilvus import DataType

        c = self.client
        if c.has_collection(COLLECTION):
            c.drop_collection(COLLECTION)
        schema = c.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("tag", DataType.INT64)
        c.create_collection(COLLECTION, schema=schema, num_shards=self.shards)
        if self.collection_properties:
            c.alter_collection_properties(COLLECTION, dict(self.collection_properties))

    @staticmethod
    def _rows(ids: np.ndarray, vectors: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"id": int(i), "vector": v, "tag": int(i) % 100}
            for i, v in zip(ids.tolist(), vectors, strict=True)
        ]

    def _wait_index(self, timeout: float = 900) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            desc = self.client.describe_index(COLLECTION, "vector") or {}
            state = str(desc.get("state", ""))
            if state.endswith("Failed"):
                raise RuntimeError(f"index build failed: {desc}")
            if desc.get("pending_index_rows", 1) == 0 and "Finished" in state:
                return desc
            if time.monotonic() > deadline:
                raise TimeoutError(f"index not finished after {timeout}s: {desc}")
            time.sleep(0.2)

    def _wait_loaded(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while "Loaded" not in str(self.client.get_load_state(COLLECTION).get("state")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"collection not loaded after {timeout}s")
            time.sleep(0.2)

    def setup(self, data: np.ndarray) -> float:
        n, dim = data.shape
        self._create(dim)
        c = self.client
        ids = np.arange(n, dtype=np.int64)
        t0 = time.perf_counter()
        for start in tqdm(range(0, n, INSERT_BATCH), desc=f"{self.name} insert", unit="batch", leave=False):
            end = min(n, start + INSERT_BATCH)
            c.insert(COLLECTION, self._rows(ids[start:end], data[start:end]))
        t1 = time.perf_counter()
        c.flush(COLLECTION)
        t2 = time.perf_counter()
        ip = c.prepare_index_params()
        ip.add_index(
            "vector",
            index_type="HNSW",
            metric_type=METRIC,
            params={"M": M, "efConstruction": EF_CONSTRUCTION},
        )
        c.create_index(COLLECTION, ip)
        desc = self._wait_index()
        t3 = time.perf_counter()
        c.load_collection(COLLECTION)
        self._wait_loaded()
        t4 = time.perf_counter()
        shown = ", ".join(f"{k}={desc[k]}" for k in ("M", "efConstruction") if k in desc)
        if not shown:
            shown = f"M={M} efConstruction={EF_CONSTRUCTION} sent, not echoed by describe_index"
        self.index_used = f"{desc.get('index_type', '?')} {desc.get('metric_type', '?')} ({shown})"
        self.stats.update(
            insert_rows_s=n / (t1 - t0),
            insert_s=t1 - t0,
            flush_s=t2 - t1,
            index_s=t3 - t2,
            load_s=t4 - t3,
            ready_s=t4 - t0,
            describe_index={k: str(v) for k, v in desc.items()},
        )
        return t4 - t0

    def search(self, queries: np.ndarray | list, nq: int, consistency: str = "Strong") -> list[list[int]]:
        q = queries[:nq]
        if isinstance(q, np.ndarray):
            q = q.tolist()
        res = self.client.search(
            COLLECTION,
            data=q,
            anns_field="vector",
            limit=TOP_K,
            search_params={"metric_type": METRIC, "params": {"ef": EF_SEARCH}},
            output_fields=["id"],
            consistency_level=consistency,
        )
        return [[hit["id"] for hit in hits] for hits in res]

    def insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.client.insert(COLLECTION, self._rows(np.asarray(ids), vectors))

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None


def _connect_retry(uri: str, timeout: float) -> Any:
    from pymilvus import MilvusClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            return MilvusClient(uri, timeout=5, dedicated=True)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class WalvusPeer(PymilvusPeer):
    """A local walvus deployment (Kafka broker + streams + indexer + gateway), via pymilvus."""

    name = "walvus"

    def start(self, keep: bool = False, gateway_processes: int = 2, searchers: int = 0) -> float:
        """``searchers`` > 0: that many ``walvus searcher`` processes serve the reads, the gateway
        scatters them (``WALVUS_SEARCHERS=remote``) and the collection has one shard per searcher."""
        from bench.harness import local_deployment

        self._stack = contextlib.ExitStack()
        self.keep = keep
        t0 = time.perf_counter()
        env = {"WALVUS_GATEWAY_PROCESSES": str(gateway_processes)}
        procs = ("streams", "indexer", "gateway")
        if searchers:
            env["WALVUS_SEARCHERS"] = "remote"
            procs = ("streams", "indexer", *(["searcher"] * searchers), "gateway")
            self.shards = searchers
            self.name = f"walvus-{searchers}s"
        self.settings = self._stack.enter_context(local_deployment(procs, **env))
        self.root = Path(self.settings["WALVUS_DATA_DIR"]).parent
        self.uri = self.remote_uri = f"http://127.0.0.1:{self.settings['WALVUS_PORT']}"
        self.notes.append(f"{gateway_processes} gateway process(es) on the port (WALVUS_GATEWAY_PROCESSES)")
        if searchers:
            self.notes.append(
                f"{searchers} walvus searcher process(es), {searchers} shard(s): gateway -> searcher hop"
            )
        self.client = _connect_retry(self.uri, 120)
        self.stats["start_s"] = time.perf_counter() - t0
        self.stats["logs"] = str(self.root)
        return self.stats["start_s"]

    def server_search_seconds(self) -> tuple[float, int] | None:
        """From the gateway's Prometheus histogram ``walvus_gateway_request_seconds{method="Search"}``."""
        import urllib.request

        url = f"http://127.0.0.1:{self.settings['WALVUS_METRICS_PORT']}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        total, calls = 0.0, 0
        for line in text.splitlines():
            if line.startswith('walvus_gateway_request_seconds_sum{method="Search"}'):
                total = float(line.rsplit(" ", 1)[1])
            elif line.startswith('walvus_gateway_request_seconds_count{method="Search"}'):
                calls = int(float(line.rsplit(" ", 1)[1]))
        return total, calls

    def close(self) -> None:
        super().close()
        stack = getattr(self, "_stack", None)
        if stack is not None:
            stack.close()
            self._stack = None
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)


class FloorPeer(PymilvusPeer):
    """``bench.floor``: gRPC servers like walvus's gateway whose Search does nothing (the floor)."""

    name = "grpc-floor"
    index_used = "none: Search answers a prepared response"
    honours_consistency = False
    answers_queries = False

    def start(self, processes: int = 2) -> float:
        import subprocess
        import sys

        t0 = time.perf_counter()
        port = _free_port()
        cmd = [sys.executable, "-m", "bench.floor", "--port", str(port)]
        self.procs = [subprocess.Popen(cmd) for _ in range(processes)]
        self.uri = self.remote_uri = f"http://127.0.0.1:{port}"
        self.client = _connect_retry(self.uri, 60)
        self.notes.append(f"{processes} server processes on the port (SO_REUSEPORT), as walvus runs")
        self.stats["start_s"] = time.perf_counter() - t0
        return self.stats["start_s"]

    def setup(self, data: np.ndarray) -> float:
        return 0.0

    def close(self) -> None:
        super().close()
        from walvus.processes import stop_processes

        stop_processes(getattr(self, "procs", []), timeout=10)
        self.procs = []


class MilvusLitePeer(PymilvusPeer):
    """milvus-lite 3.x: a pure-Python Milvus-protocol gRPC server inside this process."""

    name = "milvus-lite"
    honours_consistency = False

    def start(self) -> float:
        t0 = time.perf_counter()
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-milvus-lite-"))
        self.uri = str(self.tmp / "x.db")
        self.client = self._connect()
        self.stats["start_s"] = time.perf_counter() - t0
        self.notes.append("runs in the benchmark's own process (server threads share the GIL with clients)")
        return self.stats["start_s"]

    def close(self) -> None:
        super().close()
        with contextlib.suppress(Exception):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)
        shutil.rmtree(getattr(self, "tmp", "/nonexistent"), ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MilvusPeer(PymilvusPeer):
    """Milvus 2.3.5 standalone (embedded etcd, local storage, rocksmq) from the ``milvus`` wheel."""

    name = "milvus-2.3.5"
    COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")

    def start(self, base_dir: Path, keep: bool = False) -> float:
        from milvus import default_server

        self.server = default_server
        self.keep = keep
        self.base_dir = Path(base_dir)
        # binaries are unpacked once into base_dir/bin and reused; data and logs start empty
        for sub in ("data", "logs", "configs"):
            shutil.rmtree(self.base_dir / sub, ignore_errors=True)
        t0 = time.perf_counter()
        default_server.set_base_dir(str(self.base_dir))
        for c in self.COMPONENTS:
            default_server.config.set(f"{c}.ip", "127.0.0.1")
        etcd = _free_port()
        default_server.config.set("etcd_port", etcd)
        default_server.config.set("etcd.endpoints", f"127.0.0.1:{etcd}")
        default_server.config.set("minio.address", "127.0.0.1")  # unused: storageType is local
        default_server.start()  # other ports: the first free one from Milvus's defaults up
        self.uri = self.remote_uri = f"http://127.0.0.1:{default_server.listen_port}"
        self.client = _connect_retry(self.uri, 60)
        self.stats["start_s"] = time.perf_counter() - t0
        self.stats["server_version"] = self.client.get_server_version()
        self.stats["logs"] = str(self.base_dir / "logs")
        return self.stats["start_s"]

    def close(self) -> None:
        super().close()
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()
            self.server = None
            if not self.keep:
                shutil.rmtree(self.base_dir / "data", ignore_errors=True)


def scan_logs(root: Path, limit: int = 8) -> dict[str, Any]:
    """ERROR/Traceback lines in a deployment's logs (faiss's loader chatter excluded)."""
    hits: list[str] = []
    for log in sorted(root.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if (
                " ERROR " in line or "Traceback" in line or "CRITICAL" in line
            ) and "faiss.loader" not in line:
                hits.append(f"{log.name}: {line.strip()[:300]}")
    return {"count": len(hits), "first": hits[:limit]}


def close_peer(peer: Peer, out: dict[str, Any]) -> None:
    """Close a target after its measurements: its stats and notes, and a walvus deployment's
    logged errors, go into ``out``; a failure to close is recorded, not raised."""
    out.update(stats=peer.stats, notes=peer.notes)
    if isinstance(peer, WalvusPeer) and getattr(peer, "root", None):
        out["log_scan"] = scan_logs(peer.root)
    try:
        peer.close()
    except Exception as exc:
        out.setdefault("close_error", repr(exc))
