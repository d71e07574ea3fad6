"""Tables and index files on an object store (an S3 server, moto): a searcher on another machine
needs only Kafka and the bucket.

Each searcher here runs with a data directory of its own, shared with no other process; the index
files are written by the indexer to the bucket, beside the tables, and read from there by the
searchers: the first one on the indexer's announcement, the second one when it loads the collection.
A searcher that cannot download an index file, or list the index folder, for a while retries it
with backoff.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow.fs as pafs
import pytest
from pymilvus import DataType, MilvusClient
from pymilvus.client.types import LoadState

from tests.ports import free_port
from tests.s3 import FaultyS3, S3Server
from walvus.storage import SegmentStore

pytestmark = pytest.mark.integration
DIM = 8
SEARCHER = {"WALVUS_SEARCHER_SESSION_TIMEOUT_MS": "6000"}


def _wait(what: str, check, timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _exact(vecs: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    d = ((vecs - q) ** 2).sum(1)
    return np.lexsort((np.arange(len(vecs)), d))[:k].tolist()


def _attached(dep, key: str) -> bool:  # noqa: ANN001
    return "index attached collection=obj " in (dep.root / f"{key}.log").read_text(errors="replace")


def _hnsw_collection(client: MilvusClient, seed: int, rows: int = 600) -> np.ndarray:
    """Collection ``obj`` (one shard, an HNSW index on ``vec``) holding ``rows`` random vectors,
    flushed and indexed; returns the vectors (row i has id i)."""
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=DIM)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_name="vec_idx", index_type="HNSW", metric_type="L2", params={"M": 16})
    client.create_collection("obj", schema=schema, index_params=idx, num_shards=1)
    vecs = np.random.default_rng(seed).random((rows, DIM), dtype=np.float32)
    client.insert("obj", [{"id": i, "vec": v.tolist()} for i, v in enumerate(vecs)])
    client.flush("obj")
    _wait("the index built", lambda: client.describe_index("obj", "vec_idx")["indexed_rows"] == rows)
    return vecs


def test_a_searcher_elsewhere_reads_tables_and_indexes_from_the_bucket(
    deployment, s3: S3Server, tmp_path: Path
) -> None:
    dep = deployment
    root = f"{s3.bucket()}/walvus"
    dep.env.update({"WALVUS_STORAGE_URI": root, **s3.env, "WALVUS_SEARCHERS": "remote"})
    dep.env["WALVUS_SEARCHER_RETRY_SECONDS"] = "40"
    dep.env.update(WALVUS_GC_INTERVAL_SECONDS="1", WALVUS_GC_DROPPED_RETENTION_SECONDS="0")
    dep.start("streams", "indexer")
    dep.start_as("searcher-a", "searcher", WALVUS_DATA_DIR=str(tmp_path / "machine-a"), **SEARCHER)
    dep.start("gateway")
    client = MilvusClient(dep.uri)
    vecs = _hnsw_collection(client, seed=3)

    # the index file is in the bucket, beside the tables, and nowhere on local disk
    info = dep.api().catalog.require("obj")
    indexes = SegmentStore(root, s3.options).indexes
    built = indexes.built(info.collection_id)
    assert built and {field for _, field, _ in built} == {"vec"}
    assert indexes.location(info.collection_id) == f"{root}/{info.collection_id}/indexes"
    _wait("searcher a attaches the index it was told of", lambda: _attached(dep, "searcher-a"))
    q = vecs[42]
    search = {"ef": 200}
    hits = client.search("obj", [q.tolist()], limit=5, search_params=search, consistency_level="Strong")[0]
    assert [h["id"] for h in hits] == _exact(vecs, q, 5)

    # another machine: it loads the collection from the bucket, the index included
    dep.start_as("searcher-b", "searcher", WALVUS_DATA_DIR=str(tmp_path / "machine-b"), **SEARCHER)
    dep.kill("searcher-a")  # its shard moves to b after the group's session timeout
    hits = client.search("obj", [q.tolist()], limit=5, search_params=search, consistency_level="Strong")[0]
    assert [h["id"] for h in hits] == _exact(vecs, q, 5)
    _wait("searcher b loads the index from the bucket", lambda: _attached(dep, "searcher-b"))
    assert not list(tmp_path.rglob("*.faiss"))  # no process kept an index file on local disk

    # a dropped collection's tables and index files leave the bucket
    prefix = f"{root.removeprefix('s3://')}/{info.collection_id}"
    bucket = s3.filesystem()
    client.drop_collection("obj")
    _wait(
        "the collection gone from the bucket",
        lambda: bucket.get_file_info(pafs.FileSelector(prefix, allow_not_found=True, recursive=True)) == [],
    )
    assert not indexes.exists(info.collection_id)
    client.close()


def _attach_failures(port: int) -> float:
    """``walvus_searcher_index_attach_failures_total`` over every error type, from a searcher's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("walvus_searcher_index_attach_failures_total{")
    )


def _index_file(method: str, path: str) -> bool:
    return path.split("?")[0].endswith(".faiss")


def test_a_searcher_retries_an_index_download_until_the_bucket_serves_it(
    deployment, s3: S3Server, tmp_path: Path
) -> None:
    """The searcher reaches the bucket through a proxy that fails every index file download at
    first: it serves the segment exactly meanwhile, and attaches the index once downloads work,
    without a reload."""
    dep = deployment
    root = f"{s3.bucket()}/walvus"
    dep.env.update({"WALVUS_STORAGE_URI": root, **s3.env, "WALVUS_SEARCHERS": "remote"})
    with FaultyS3(s3, _index_file) as proxy:
        proxy.failing = True
        dep.start("streams", "indexer")
        via_proxy = json.dumps(proxy.options)
        data_dir = str(tmp_path / "machine-a")
        metrics_port = free_port()
        dep.start_as(
            "searcher-a",
            "searcher",
            WALVUS_DATA_DIR=data_dir,
            WALVUS_STORAGE_OPTIONS=via_proxy,
            WALVUS_SEARCHER_METRICS_PORT=str(metrics_port),
            **SEARCHER,
        )
        dep.start("gateway")
        client = MilvusClient(dep.uri)
        vecs = _hnsw_collection(client, seed=5)

        log = dep.root / "searcher-a.log"
        failed = "index attach failed, retrying collection=obj "
        _wait("a failed download", lambda: log.read_text(errors="replace").count(failed) >= 2)
        assert not _attached(dep, "searcher-a") and proxy.refused
        assert _attach_failures(metrics_port) >= 2  # reported on the searcher's /metrics
        q = vecs[42]
        hits = client.search("obj", [q.tolist()], limit=5, consistency_level="Strong")[0]
        assert [h["id"] for h in hits] == _exact(vecs, q, 5)  # served exactly meanwhile

        proxy.failing = False  # the bucket serves index files again
        _wait("the retry attaches the index", lambda: _attached(dep, "searcher-a"))
        assert "loaded collection=obj " in log.read_text(errors="replace")
        assert log.read_text(errors="replace").count("loaded collection=obj ") == 1  # no reload
        hits = client.search(
            "obj", [q.tolist()], limit=5, search_params={"ef": 200}, consistency_level="Strong"
        )[0]
        assert [h["id"] for h in hits] == _exact(vecs, q, 5)
        client.close()
        dep.stop_all()


def _index_listing(method: str, path: str) -> bool:
    """A listing of an index folder: S3's ListObjects with a ``<collection id>/indexes/`` prefix."""
    query = parse_qs(urlsplit(path).query)
    return method == "GET" and "list-type" in query and "/indexes" in query.get("prefix", [""])[0]


def test_a_searcher_loads_while_the_bucket_cannot_list_the_index_folder(
    deployment, s3: S3Server, tmp_path: Path
) -> None:
    """The collection is loaded while the bucket fails every listing of its index folder: the load
    completes all the same and serves the segment exactly, the failures are on the searcher's
    /metrics, and the listing, retried, attaches the index once the bucket lists again, without
    another load."""
    dep = deployment
    root = f"{s3.bucket()}/walvus"
    dep.env.update({"WALVUS_STORAGE_URI": root, **s3.env, "WALVUS_SEARCHERS": "remote"})
    with FaultyS3(s3, _index_listing) as proxy:
        dep.start("streams", "indexer")
        metrics_port = free_port()
        dep.start_as(
            "searcher-a",
            "searcher",
            WALVUS_DATA_DIR=str(tmp_path / "machine-a"),
            WALVUS_STORAGE_OPTIONS=json.dumps(proxy.options),
            WALVUS_SEARCHER_METRICS_PORT=str(metrics_port),
            **SEARCHER,
        )
        dep.start("gateway")
        client = MilvusClient(dep.uri)
        vecs = _hnsw_collection(client, seed=7)
        log = dep.root / "searcher-a.log"
        _wait("the index attached", lambda: _attached(dep, "searcher-a"))

        def count(line: str) -> int:
            return log.read_text(errors="replace").count(line)

        attached, loaded = "index attached collection=obj ", "loaded collection=obj "
        assert (count(attached), count(loaded)) == (1, 1)
        proxy.failing = True  # the bucket cannot list index folders from now on
        client.release_collection("obj")
        client.load_collection("obj")
        _wait("the searcher loads the collection again", lambda: count(loaded) == 2)

        assert count("index folder listing failed, retrying collection=obj ") >= 1 and proxy.refused
        assert _attach_failures(metrics_port) >= 1
        assert client.get_load_state("obj")["state"] == LoadState.Loaded
        assert count(attached) == 1  # this copy has no index: its segment is searched exactly
        q = vecs[77]
        hits = client.search("obj", [q.tolist()], limit=5, consistency_level="Strong")[0]
        assert [h["id"] for h in hits] == _exact(vecs, q, 5)

        proxy.failing = False  # the bucket lists again
        _wait("the retried listing attaches the index", lambda: count(attached) == 2)
        assert count(loaded) == 2  # no reload
        assert count("index folder listing retries ended ") == 1
        hits = client.search(
            "obj", [q.tolist()], limit=5, search_params={"ef": 200}, consistency_level="Strong"
        )[0]
        assert [h["id"] for h in hits] == _exact(vecs, q, 5)
        client.close()
        dep.stop_all()
