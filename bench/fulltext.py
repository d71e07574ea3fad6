"""Full-text search: BM25 query QPS, latency and ranking agreement of walvus, beside an in-process
BM25 reference and milvus-lite.

    python -m bench.fulltext [--docs 100000] [--queries 300] [--threads 4] [--targets walvus,milvus-lite]

- Corpus: generated offline and deterministically (``--seed``): a vocabulary of ``--vocab``
  synthetic words drawn with Zipf-like frequencies (p ~ 1 / rank^1.07), documents of 20 to 120
  words. Queries: 2 to 4 distinct words of rank 30 to 5,000 (neither stop-word-like nor unseen).
- Each target gets the same collection: ``id``, ``text`` (VARCHAR, standard analyzer) and a
  ``BM25`` function into ``sparse`` (SPARSE_INVERTED_INDEX, metric BM25, k1 = 1.2, b = 0.75);
  documents are inserted as text in batches of 2,000 and the server tokenises them.
- Reference: the same tokeniser (``schemas.analyzer``, tantivy's standard pipeline) in this
  process, a term-sorted posting list in numpy, Milvus's BM25 (``idf = ln(1 + (N - df + 0.5) /
  (df + 0.5))``). It also reports its own query speed.
- Measured: load rate, QPS and latency (p50/p99) of top-10 searches one at a time, QPS of
  ``--threads`` clients, and nDCG@10 of each target's hits against the reference (gain = the
  reference's BM25 score of the hit; 1.0 = the reference ranking or a reordering of tied scores).

Writes bench/results/fulltext.json.
"""

from __future__ import annotations

import argparse
import itertools
import os
import threading
import time
from typing import Any

import numpy as np

from bench.harness import console, print_table, save, wanted_targets

TARGETS = ("walvus", "milvus-lite")
COLLECTION = "fulltext_bench"
BATCH = 2000
K1, B = 1.2, 0.75


def vocabulary(size: int) -> np.ndarray:
    """``size`` distinct lowercase words (letters only, 3+ characters), the same every run."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    digits = np.stack([(np.arange(size) // 26**p) % 26 for p in range(4)], axis=1)
    return np.array(["zq" + "".join(letters[d]) for d in digits])


def corpus(docs: int, vocab_size: int, n_queries: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    vocab = vocabulary(vocab_size)
    p = 1.0 / np.arange(1, vocab_size + 1) ** 1.07
    lengths = rng.integers(20, 121, docs)
    words = vocab[rng.choice(vocab_size, size=int(lengths.sum()), p=p / p.sum())]
    texts = [" ".join(w) for w in np.split(words, np.cumsum(lengths)[:-1])]
    hi = min(5000, vocab_size)
    queries = [
        " ".join(vocab[rng.choice(np.arange(30, hi), size=int(rng.integers(2, 5)), replace=False)])
        for _ in range(n_queries)
    ]
    return texts, queries


class Bm25Reference:
    """BM25 over a fixed corpus: postings sorted by term, scores accumulated with ``bincount``."""

    def __init__(self, texts: list[str]) -> None:
        from schemas.analyzer import build_analyzer

        self.analyzer = build_analyzer({"type": "standard"})
        tokens = [self.analyzer.tokens(t) for t in texts]
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        self.terms, term = np.unique(
            np.array(list(itertools.chain.from_iterable(tokens))), return_inverse=True
        )
        doc = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        key, tf = np.unique(term.astype(np.int64) * len(texts) + doc, return_counts=True)  # sorted by term
        self.post_doc, post_term = key % len(texts), key // len(texts)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(post_term, minlength=len(self.terms)))])
        self.n = len(texts)
        df = np.diff(self.indptr)
        self.idf = np.log(1.0 + (self.n - df + 0.5) / (df + 0.5))
        norm = K1 * (1 - B + B * lengths / lengths.mean())
        self.weight = tf * (K1 + 1) / (tf + norm[self.post_doc])  # the tf part of each posting

    def scores(self, query: str) -> np.ndarray:
        q = np.asarray(self.analyzer.tokens(query), dtype=str)
        t = np.searchsorted(self.terms, q)
        t = t[(t < len(self.terms)) & (self.terms[np.minimum(t, len(self.terms) - 1)] == q)]
        spans = [np.arange(self.indptr[i], self.indptr[i + 1]) for i in t]
        if not spans:
            return np.zeros(self.n)
        idx = np.concatenate(spans)
        contrib = self.weight[idx] * np.repeat(self.idf[t], [len(s) for s in spans])
        return np.bincount(self.post_doc[idx], weights=contrib, minlength=self.n)

    def top(self, query: str, k: int) -> list[int]:
        s = self.scores(query)
        cand = np.argpartition(-s, k)[:k] if k < self.n else np.arange(self.n)
        cand = cand[s[cand] > 0]
        return cand[np.lexsort((cand, -s[cand]))].tolist()


def ndcg(got: list[int], scores: np.ndarray, k: int = 10) -> float:
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(scores)[::-1][:k]
    best = float((ideal * discount[: len(ideal)]).sum())
    gains = scores[np.asarray(got[:k], dtype=np.int64)] if got else np.zeros(0)
    return float((gains * discount[: len(gains)]).sum()) / best if best > 0 else 1.0


def _create(client: Any) -> None:
    from pymilvus import DataType, Function, FunctionType

    if client.has_collection(COLLECTION):
        client.drop_collection(COLLECTION)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=4096, enable_analyzer=True)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["sparse"],
        )
    )
    idx = client.prepare_index_params()
    idx.add_index(
        "sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={"bm25_k1": K1, "bm25_b": B}
    )
    client.create_collection(COLLECTION, schema=schema, index_params=idx)


def _search(client: Any, query: str) -> list[int]:
    res = client.search(COLLECTION, [query], anns_field="sparse", limit=10, consistency_level="Bounded")
    return [h["id"] for h in res[0]]


def measure(name: str, search: Any, make_search: Any, queries: list[str], threads: int) -> dict[str, Any]:
    """Latency one query at a time, then QPS of ``threads`` searchers each running every query.

    One untimed pass over the queries first: a server that just loaded may still be handing
    segments over, and each first query of a container builds its inverted index.
    """
    for q in queries:
        search(q)
    hits, lat = [], []
    t0 = time.perf_counter()
    for q in queries:
        s = time.perf_counter()
        hits.append(search(q))
        lat.append(time.perf_counter() - s)
    serial = time.perf_counter() - t0
    ms = np.array(lat) * 1000
    console.print(f"{name}: {len(queries) / serial:.0f} QPS serial, p50 {np.percentile(ms, 50):.1f} ms")
    out = {
        "load_avg_1m": os.getloadavg()[0],
        "hits": hits,
        "qps_1": len(queries) / serial,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }
    if threads < 1:
        return out
    workers = [make_search() for _ in range(threads)]
    start = threading.Barrier(threads + 1)

    def run(fn: Any) -> None:
        start.wait()
        for q in queries:
            fn(q)

    pool = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in pool:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in pool:
        t.join()
    parallel = time.perf_counter() - t0
    return {**out, f"qps_{threads}": threads * len(queries) / parallel}


def run_server(name: str, texts: list[str], queries: list[str], threads: int) -> dict[str, Any]:
    from bench.peers import MilvusLitePeer, WalvusPeer

    peer = WalvusPeer() if name == "walvus" else MilvusLitePeer()
    peer.start()
    try:
        client = peer.client
        _create(client)
        t0 = time.perf_counter()
        for i in range(0, len(texts), BATCH):
            client.insert(
                COLLECTION, [{"id": j, "text": texts[j]} for j in range(i, min(i + BATCH, len(texts)))]
            )
        client.flush(COLLECTION)
        client.load_collection(COLLECTION)
        while client.query(COLLECTION, output_fields=["count(*)"], consistency_level="Strong")[0][
            "count(*)"
        ] < len(texts):
            time.sleep(0.5)
        load = time.perf_counter() - t0
        console.print(f"{name}: {len(texts):,} documents loaded and searchable in {load:.1f} s")
        clients = []

        def make() -> Any:
            c = peer._connect()
            clients.append(c)
            return lambda q: _search(c, q)

        out = measure(name, lambda q: _search(client, q), make, queries, threads)
        for c in clients:
            c.close()
        return {**out, "load_docs_per_s": len(texts) / load, "notes": list(peer.notes)}
    finally:
        peer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--vocab", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--targets", default=",".join(TARGETS))
    args = ap.parse_args()
    targets = wanted_targets(args.targets, TARGETS)
    if not console.is_terminal:  # a log file or pipe: wide enough that the table does not wrap
        console.width = max(console.width, 170)
    t0 = time.perf_counter()
    texts, queries = corpus(args.docs, args.vocab, args.queries, args.seed)
    ref = Bm25Reference(texts)
    console.print(
        f"corpus: {args.docs:,} documents, {len(ref.terms):,} distinct words, built in {time.perf_counter() - t0:.1f} s"
    )
    truth = [ref.scores(q) for q in queries]
    results: dict[str, Any] = {
        "reference": measure(
            "reference", lambda q: ref.top(q, 10), lambda: lambda q: ref.top(q, 10), queries, 0
        )
    }
    results["reference"]["notes"] = ["numpy postings in this process, one thread"]
    for name in targets:
        try:
            results[name] = run_server(name, texts, queries, args.threads)
        except Exception as exc:  # a peer that cannot run is reported, not fatal
            console.print(f"[red]{name} failed: {exc!r}[/red]")
            results[name] = {"error": repr(exc)}
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append([name, "failed", "", "", "", "", "", "", r["error"][:60]])
            continue
        r["ndcg10"] = float(np.mean([ndcg(h, s) for h, s in zip(r.pop("hits"), truth, strict=True)]))
        rows.append(
            [
                name,
                r.get("load_docs_per_s", ""),
                r["qps_1"],
                r.get(f"qps_{args.threads}", ""),
                r["p50_ms"],
                r["p99_ms"],
                r["ndcg10"],
                r["load_avg_1m"],
                "; ".join(r["notes"]),
            ]
        )
    print_table(
        f"BM25 top-10, {args.docs:,} documents, {args.queries} queries",
        [
            "target",
            "load docs/s",
            "QPS 1 client",
            f"QPS {args.threads} clients",
            "p50 ms",
            "p99 ms",
            "nDCG@10",
            "load",
            "notes",
        ],
        rows,
    )
    path = save("fulltext", {"args": vars(args), "distinct_words": len(ref.terms), "results": results})
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
