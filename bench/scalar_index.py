"""Filter speed with and without scalar / JSON-path indexes, through pymilvus against a fresh walvus.

    python -m bench.scalar_index [--rows 200000] [--dim 16] [--seconds 5]

One collection of ``rows`` rows (compaction off, so both runs see the same segments) (``meta`` JSON with a numeric ``a`` and a string ``s``, an INT64
``n``), sealed and FLAT-indexed. Each filter is timed (one client, nq=1, Strong) as query QPS and
filtered-search QPS, first with no scalar index, then after adding an INVERTED JSON-path index on
``meta["a"]`` (DOUBLE), an AUTOINDEX path index on ``meta["s"]`` (VARCHAR) and STL_SORT on ``n``.
Every filter's result is checked to be identical in both runs. Prints a table and writes
bench/results/scalar_index.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient

from bench.harness import local_deployment, print_table, save

NAME = "scalar_bench"
FILTERS = {
    'meta["a"] == 17 (0.1%)': 'meta["a"] == 17',
    'meta["a"] < 10 (1%)': 'meta["a"] < 10',
    'meta["s"] == "s7" and meta["a"] > 500 (0.5%)': 'meta["s"] == "s7" and meta["a"] > 500',
    "n in [5, 6] (0.2%)": "n in [5, 6]",
}


def _load(client: MilvusClient, rows: int, dim: int) -> None:
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("n", DataType.INT64)
    schema.add_field("meta", DataType.JSON)
    idx = client.prepare_index_params()
    idx.add_index("vec", index_type="FLAT", metric_type="L2")
    client.create_collection(NAME, schema=schema, index_params=idx, consistency_level="Strong")
    rng = np.random.default_rng(0)
    batch = 10_000
    for start in range(0, rows, batch):
        ids = np.arange(start, min(rows, start + batch))
        vecs = rng.random((len(ids), dim), dtype=np.float32)
        a = rng.integers(0, 1000, len(ids))
        s = rng.integers(0, 10, len(ids))
        client.insert(
            NAME,
            [
                {
                    "id": int(i),
                    "vec": v,
                    "n": int(i % 1000),
                    "meta": {"a": int(x), "s": f"s{y}", "pad": "x" * 40},
                }
                for i, v, x, y in zip(ids, vecs, a, s, strict=True)
            ],
        )
    client.flush(NAME)
    deadline = time.monotonic() + 600
    while True:
        st = client.get_collection_stats(NAME)
        sealed = int(st.get("sealed_segments", 0))
        if sealed and int(st.get("growing_rows", 1)) == 0 and int(st.get("loaded_indexes", 0)) == sealed:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not sealed and indexed: {st}")
        time.sleep(0.5)


def _qps(call: Any, seconds: float) -> float:
    call()  # warm: postings are built on first use
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        n += 1
    return n / (time.perf_counter() - start)


def _measure(client: MilvusClient, seconds: float, dim: int) -> dict[str, dict[str, Any]]:
    q = np.full((1, dim), 0.5, np.float32).tolist()
    out = {}
    for label, expr in FILTERS.items():
        ids = sorted(r["id"] for r in client.query(NAME, expr, output_fields=["id"], limit=16384))
        hits = [h["id"] for h in client.search(NAME, q, filter=expr, limit=10)[0]]
        out[label] = {
            "query_qps": _qps(lambda e=expr: client.query(NAME, e, output_fields=["id"], limit=100), seconds),
            "search_qps": _qps(lambda e=expr: client.search(NAME, q, filter=e, limit=10), seconds),
            "ids": ids,
            "hits": hits,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    # no background compaction: both runs must see the same segments (and the same idle CPU)
    env = {"WALVUS_SEAL_IDLE_SECONDS": "3", "WALVUS_COMPACTION_CHECK_SECONDS": "86400"}
    with local_deployment(("streams", "indexer", "gateway"), **env) as settings:
        uri = f"http://127.0.0.1:{settings['WALVUS_PORT']}"
        client = _connect(uri)
        t0 = time.perf_counter()
        _load(client, args.rows, args.dim)
        print(f"loaded {args.rows} rows in {time.perf_counter() - t0:.0f}s")
        plain = _measure(client, args.seconds, args.dim)
        idx = client.prepare_index_params()
        idx.add_index(
            "meta",
            index_type="INVERTED",
            index_name="meta_a",
            params={"json_path": 'meta["a"]', "json_cast_type": "DOUBLE"},
        )
        idx.add_index(
            "meta",
            index_type="AUTOINDEX",
            index_name="meta_s",
            params={"json_path": 'meta["s"]', "json_cast_type": "VARCHAR"},
        )
        idx.add_index("n", index_type="STL_SORT")
        client.create_index(NAME, idx)
        t0 = time.perf_counter()
        client.query(NAME, FILTERS['meta["a"] == 17 (0.1%)'], output_fields=["id"], limit=1)
        first = time.perf_counter() - t0
        indexed = _measure(client, args.seconds, args.dim)
    rows, data = [], {"rows": args.rows, "dim": args.dim, "first_indexed_query_s": first, "filters": {}}
    for label in FILTERS:
        p, i = plain[label], indexed[label]
        if (p["ids"], p["hits"]) != (i["ids"], i["hits"]):
            raise SystemExit(f"results differ with the index for {label}")
        rows.append(
            [
                label,
                p["query_qps"],
                i["query_qps"],
                i["query_qps"] / p["query_qps"],
                p["search_qps"],
                i["search_qps"],
                i["search_qps"] / p["search_qps"],
            ]
        )
        data["filters"][label] = {
            k: v
            for k, v in {**p, **{f"indexed_{k}": v for k, v in i.items()}}.items()
            if "ids" not in k and "hits" not in k
        }
    print_table(
        f"Filters over {args.rows:,} sealed rows, nq=1, one client (QPS)",
        ["filter", "query", "query+index", "x", "search", "search+index", "x"],
        rows,
    )
    print(f"first query after create_index (builds postings on every segment): {first:.2f}s")
    print(f"wrote {save('scalar_index', data)}")


def _connect(uri: str) -> MilvusClient:
    deadline = time.monotonic() + 120
    while True:
        try:
            return MilvusClient(uri)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


if __name__ == "__main__":
    main()
