"""Ingest: rows/s from a producer to committed Delta segments, beside the limits of its parts.

    python -m bench.ingest [--rows-128 300000] [--rows-768 60000] [--batch 10000]

For each dimension it measures, in one run:
- walvus end to end: write API (validation, WAL encode, Kafka ack) -> Faust worker -> Delta
  commit, timed until ``flush`` confirms every row is committed;
- walvus acked: the same writes, timed until Kafka acknowledged them;
- raw Kafka: confluent-kafka producing the same bytes, no walvus (the ingest limit);
- raw Delta: ``write_deltalake`` of the same rows from memory (the storage limit).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake
from tqdm import tqdm

from bench.harness import local_deployment, print_table, save
from schemas.collection import CollectionSchema, FieldSchema
from schemas.types import DataType


def _schema(dim: int) -> CollectionSchema:
    return CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("vec", DataType.FLOAT_VECTOR, dim=dim),
            FieldSchema("tag", DataType.INT32),
        )
    )


def run_dim(api, dim: int, rows: int, batch: int) -> dict[str, float]:
    from confluent_kafka import Producer

    name = f"ingest_{dim}"
    api.create_collection(name, _schema(dim), shards_num=2)
    rng = np.random.default_rng(dim)
    batches = []
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        batches.append(
            {
                "id": np.arange(start, start + n, dtype=np.int64),
                "vec": rng.random((n, dim), dtype=np.float32),
                "tag": rng.integers(0, 100, n, dtype=np.int32),
            }
        )
    t0 = time.perf_counter()
    for b in tqdm(batches, desc=f"walvus {dim}-d", unit="batch", leave=False):
        api.insert(name, b)
    acked = time.perf_counter() - t0
    api.flush([name], timeout=600)
    committed = time.perf_counter() - t0

    # raw Kafka: the same payload sizes, no walvus
    payload = rows * (dim * 4 + 12)
    msg = b"x" * 1024
    n_msgs = max(1, payload // len(msg))
    p = Producer(
        {"bootstrap.servers": api.kafka.conf["bootstrap.servers"], "linger.ms": 5, "batch.size": 1_000_000}
    )
    api.kafka.ensure_topic(f"{api.ns}.raw{dim}", 2)
    t1 = time.perf_counter()
    for i in range(n_msgs):
        while True:
            try:
                p.produce(f"{api.ns}.raw{dim}", msg, partition=i % 2)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)
    raw_kafka = time.perf_counter() - t1

    # raw Delta: the same rows straight from memory
    table = pa.table(
        {
            "id": pa.array(np.arange(rows)),
            "vec": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(rows * dim, np.float32)), dim),
            "tag": pa.array(np.zeros(rows, np.int32)),
        }
    )
    t2 = time.perf_counter()
    write_deltalake(tempfile.mkdtemp(prefix="rawdelta-"), table, mode="append")
    raw_delta = time.perf_counter() - t2
    return {
        "dim": dim,
        "rows": rows,
        "walvus_committed_rows_s": rows / committed,
        "walvus_acked_rows_s": rows / acked,
        "raw_kafka_rows_s": rows / raw_kafka,
        "raw_kafka_mb_s": payload / raw_kafka / 1e6,
        "raw_delta_rows_s": rows / raw_delta,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows-128", type=int, default=300_000)
    ap.add_argument("--rows-768", type=int, default=60_000)
    ap.add_argument("--batch", type=int, default=10_000)
    args = ap.parse_args()
    with local_deployment(("streams",)):
        from walvus.api import Walvus

        api = Walvus.connect(__import__("os").environ["KAFKA_BOOTSTRAP_SERVERS"])
        results = [run_dim(api, 128, args.rows_128, args.batch), run_dim(api, 768, args.rows_768, args.batch)]
        api.close()
    print_table(
        f"ingest: rows/s (2 shards, batches of {args.batch} rows)",
        [
            "dim",
            "rows",
            "walvus end to end (Delta committed)",
            "walvus acked by Kafka",
            "raw Kafka producer",
            "raw write_deltalake",
        ],
        [
            [
                r["dim"],
                r["rows"],
                r["walvus_committed_rows_s"],
                r["walvus_acked_rows_s"],
                r["raw_kafka_rows_s"],
                r["raw_delta_rows_s"],
            ]
            for r in results
        ],
    )
    print("saved", save("ingest", results))


if __name__ == "__main__":
    main()
