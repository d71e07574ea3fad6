"""Shared helpers of the search-surface integration tests (``test_search_*.py``).

Each test module runs one walvus deployment (streams, indexer, gateway) for all its tests, so
the processes start once per module; collections get distinct names. Growing rows are only
sealed by an explicit flush (the idle seal is pushed out of the way), so a test decides which
rows are growing and which are sealed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymilvus import DataType, MilvusClient

from tests.procs import Deployment

SEARCH_ENV = {"WALVUS_SEAL_IDLE_SECONDS": "600"}


def create_flat_collection(client: MilvusClient, name: str, dim: int, **options: object) -> None:
    """A collection of ``id`` (INT64 primary key), ``vec`` (FLOAT_VECTOR, FLAT L2) and ``n`` (INT64)."""
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("n", DataType.INT64)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(name, schema=schema, index_params=idx, **options)


@contextmanager
def running(
    bootstrap: str, root: Path, layout: str = "local", **env: str
) -> Iterator[tuple[Deployment, MilvusClient]]:
    """A deployment of its own (namespace, data dir) with every process running, in ``layout``
    (``tests.procs.LAYOUTS``)."""
    dep = Deployment(bootstrap, root)
    dep.env.update(SEARCH_ENV)
    dep.env.update(env)
    try:
        dep.start_all(layout)
        client = MilvusClient(dep.uri)
        try:
            yield dep, client
        finally:
            client.close()
    finally:
        dep.close()


def stats(client: MilvusClient, name: str) -> dict[str, int]:
    """``get_collection_stats`` with the walvus extras as ints."""
    return {k: int(v) for k, v in client.get_collection_stats(name).items() if str(v).lstrip("-").isdigit()}


def wait_indexed(client: MilvusClient, name: str, vector_fields: int, timeout: float = 90) -> dict[str, int]:
    """After a flush: wait until the searcher holds every row in sealed segments (the seal
    announcements of all shards arrive on their own schedule) and each sealed segment has its
    FAISS index loaded for every vector field."""
    deadline = time.monotonic() + timeout
    while True:
        s = stats(client, name)
        if (
            s.get("sealed_segments", 0)
            and s.get("growing_rows", -1) == 0
            and s.get("loaded_indexes", -1) == s["sealed_segments"] * vector_fields
        ):
            return s
        if time.monotonic() > deadline:
            raise TimeoutError(f"indexes of {name} not loaded in {timeout}s: {s}")
        time.sleep(0.2)


def scanned(client: MilvusClient, name: str) -> int:
    return stats(client, name)["scanned_rows"]
