"""Range search: Milvus boundary rules for every metric, against exactly computed distances.

L2 / HAMMING / JACCARD keep ``range_filter <= d < radius``; IP / COSINE keep
``radius < d <= range_filter``. Boundary tests use data whose distances float32 computes exactly
(small integers for L2 and IP; vectors of 1, 4 or 16 entries of +-1 for COSINE, whose normalised
dot products are sums of powers of two) and pick radius and range_filter among distances that
occur, so points sit exactly on both boundaries.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexer import VectorIndex, brute_force_range_search
from schemas.index_spec import IndexSpec, IndexSpecError

N, DIM, NQ = 3000, 16, 12
EXACT_TYPES = ("FLAT", "IVF_FLAT")  # exact distances over every probed row
GRAPH_TYPES = ("HNSW", "SCANN")  # exact distances, approximate candidate sets
SEARCH = {"nprobe": 65536, "ef": 512, "reorder_k": 4096}
BUILD = {"HNSW": {"M": 16, "efConstruction": 100}}


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread():
    """Single-threaded faiss: as fast here, and immune to OpenMP spin-waits on a busy machine."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def dyadic_unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros((n, DIM), dtype=np.float32)
    for row, ones in zip(x, rng.choice([1, 4, 16], n), strict=True):
        cols = rng.choice(DIM, ones, replace=False)
        row[cols] = rng.choice([-1.0, 1.0], ones)
    return x


@pytest.fixture(scope="module")
def exact_data():
    rng = np.random.default_rng(0)
    ints = rng.integers(-2, 3, (N, DIM)).astype(np.float32)
    ints_q = np.vstack([ints[:4], rng.integers(-2, 3, (NQ - 4, DIM))]).astype(np.float32)
    dyad = dyadic_unit_vectors(N, rng)
    dyad_q = np.vstack([dyad[:4], dyadic_unit_vectors(NQ - 4, rng)])
    return {"L2": (ints, ints_q), "IP": (ints, ints_q), "COSINE": (dyad, dyad_q)}


def exact_matrix(x: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "L2":
        return ((q64[:, None, :] - x64[None]) ** 2).sum(-1)
    if metric == "COSINE":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    return q64 @ x64.T


def bounds(dist: np.ndarray, metric: str) -> tuple[float, float]:
    """(radius, range_filter) among occurring distances: ~2% and ~0.2% of pairs are better."""
    ranked = -np.sort(-dist.ravel()) if metric in ("IP", "COSINE") else np.sort(dist.ravel())
    radius, rf = float(ranked[int(0.02 * ranked.size)]), float(ranked[int(0.002 * ranked.size)])
    assert rf != radius
    return radius, rf


def expected_sets(dist, metric, radius, rf):
    if metric in ("IP", "COSINE"):
        keep = (dist > radius) & ((dist <= rf) if rf is not None else True)
    else:
        keep = (dist < radius) & ((dist >= rf) if rf is not None else True)
    return [set(np.flatnonzero(row)) for row in keep]


def check_result(results, dist, metric, radius, rf, exact: bool):
    similarity = metric in ("IP", "COSINE")
    want = expected_sets(dist, metric, radius, rf)
    found = total = 0
    for i, (d, labels) in enumerate(results):
        assert d.dtype == np.float32 and labels.dtype == np.int64
        got = set(labels.tolist())
        assert len(got) == len(labels)
        assert got <= want[i], "returned a row outside the range"
        np.testing.assert_array_equal(d, dist[i, labels].astype(np.float32))  # exact distances
        assert (np.diff(d) <= 0).all() if similarity else (np.diff(d) >= 0).all()
        assert not (dist[i, labels] == radius).any(), "a point at d == radius must be excluded"
        if exact:
            assert got == want[i]
        found += len(got)
        total += len(want[i])
    assert total > 0
    return found / total


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
@pytest.mark.parametrize("index_type", [*EXACT_TYPES, *GRAPH_TYPES, "brute"])
def test_float_range_boundaries(index_type, metric, exact_data):
    x, q = exact_data[metric]
    dist = exact_matrix(x, q, metric)
    radius, rf = bounds(dist, metric)
    assert (dist == radius).any() and (dist == rf).any()  # points sit on both boundaries
    for range_filter in (rf, None):
        if index_type == "brute":
            results = brute_force_range_search(x, q, metric, radius, range_filter)
        else:
            spec = IndexSpec.parse(index_type, metric, BUILD.get(index_type, {}), DIM, "FLOAT_VECTOR")
            results = VectorIndex.build(spec, x).range_search(q, radius, range_filter, SEARCH)
        got = check_result(results, dist, metric, radius, range_filter, exact=index_type not in GRAPH_TYPES)
        assert got >= 0.95
        if range_filter is not None:  # every point exactly at range_filter is included
            on_rf = [set(np.flatnonzero(row == rf)) for row in dist]
            if index_type not in GRAPH_TYPES:
                assert all(s <= set(r[1].tolist()) for s, r in zip(on_rf, results, strict=True))
            assert sum(len(s) for s in on_rf) > 0


def unpacked_distances(x: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    xb = np.unpackbits(x, axis=1).astype(bool)
    qb = np.unpackbits(q, axis=1).astype(bool)
    if metric == "HAMMING":
        return (qb[:, None, :] ^ xb[None]).sum(-1).astype(np.float32)
    inter = (qb[:, None, :] & xb[None]).sum(-1)
    union = (qb[:, None, :] | xb[None]).sum(-1)
    out = np.where(union > 0, 1.0 - inter / np.maximum(union, 1), 0.0)
    return out.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("metric", ["HAMMING", "JACCARD"])
@pytest.mark.parametrize("index_type", ["BIN_FLAT", "BIN_IVF_FLAT", "brute"])
def test_binary_range_boundaries(index_type, metric):
    rng = np.random.default_rng(1)
    x = np.packbits(rng.random((N, 64)) < 0.3, axis=1)
    q = np.vstack([x[:3], np.packbits(rng.random((NQ - 3, 64)) < 0.3, axis=1)])
    dist = unpacked_distances(x, q, metric)
    radius, rf = bounds(dist, metric)
    allowed = rng.random(N) < 0.5
    for range_filter in (rf, None):
        if index_type == "brute":
            results = brute_force_range_search(x, q, metric, radius, range_filter)
            filtered = brute_force_range_search(x, q, metric, radius, range_filter, allowed=allowed)
        else:
            index = VectorIndex.build(
                IndexSpec.parse(index_type, metric, {"nlist": 16}, 64, "BINARY_VECTOR"), x
            )
            results = index.range_search(q, radius, range_filter, {"nprobe": 16})
            filtered = index.range_search(q, radius, range_filter, {"nprobe": 16}, allowed=allowed)
        check_result(results, dist, metric, radius, range_filter, exact=True)
        masked = np.where(allowed[None], dist, np.inf)
        check_result(filtered, masked, metric, radius, range_filter, exact=True)


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(0)
    centres = 4 * rng.standard_normal((20, 32)).astype(np.float32)
    shapes = rng.standard_normal((20, 8, 32)).astype(np.float32) / np.sqrt(8)

    def sample(n):
        lab = rng.integers(0, 20, n)
        z = rng.standard_normal((n, 8)).astype(np.float32)
        return (centres[lab] + np.einsum("nl,nld->nd", z, shapes[lab])).astype(np.float32)

    return sample(5000), sample(20)


APPROX = {  # index type -> (build, search, recall floor vs the exact range)
    "IVF_SQ8": ({"nlist": 32}, {"nprobe": 32}, 0.9),
    "IVF_PQ": ({"nlist": 32, "m": 16}, {"nprobe": 32}, 0.8),
    "HNSW": ({"M": 16, "efConstruction": 100}, {"ef": 128}, 0.9),
    "SCANN": ({"nlist": 32}, {"nprobe": 32, "reorder_k": 200}, 0.9),
    "SCANN_NO_RAW": ({"nlist": 32, "with_raw_data": False}, {"nprobe": 32}, 0.6),
}


@pytest.mark.parametrize("metric", ["L2", "IP", "COSINE"])
@pytest.mark.parametrize("case", list(APPROX))
def test_approximate_range_recall_and_rules(case, metric, clustered):
    x, q = clustered
    build, search, floor = APPROX[case]
    spec = IndexSpec.parse(case.replace("_NO_RAW", ""), metric, build, 32, "FLOAT_VECTOR")
    index = VectorIndex.build(spec, x)
    dist = exact_matrix(x, q, metric)
    similarity = metric != "L2"
    ranked = -np.sort(-dist, axis=1) if similarity else np.sort(dist, axis=1)
    radius = float(np.median(ranked[:, 100]))  # ~100 rows per query
    rf = float(np.median(ranked[:, 10]))
    allowed = np.random.default_rng(5).random(len(x)) < 0.5
    results = index.range_search(q, radius, rf, search)
    want = expected_sets(dist, metric, radius, rf)
    hits = sum(len(want[i] & set(r[1].tolist())) for i, r in enumerate(results))
    got = hits / sum(len(w) for w in want)
    print(f"range recall {case} {metric}: {got:.3f}")
    if metric == "IP" and case in ("IVF_PQ", "SCANN_NO_RAW"):
        floor = 0.3  # quantised inner products of unnormalised vectors are coarse
    if metric == "IP" and case == "HNSW":
        floor = 0.6  # graph search under a non-metric similarity (0.74 even at ef=512)
    assert got >= floor
    filtered = index.range_search(q, radius, rf, search, allowed=allowed)
    for d, _ in results + filtered:
        keep = (d > radius) & (d <= rf) if similarity else (d < radius) & (d >= rf)
        assert keep.all()  # the rules hold on the distances the index reports
        assert (np.diff(d) <= 0).all() if similarity else (np.diff(d) >= 0).all()
    for _, labels in filtered + index.range_search(q, radius, None, search, allowed=allowed):
        assert allowed[labels].all()


def test_limit_and_validation(exact_data):
    x, q = exact_data["L2"]
    index = VectorIndex.build(IndexSpec.parse("FLAT", "L2", {}, DIM, "FLOAT_VECTOR"), x)
    full = index.range_search(q, 20.0)
    limited = index.range_search(q, 20.0, limit=5)
    for (d_full, _), (d_lim, l_lim) in zip(full, limited, strict=True):
        assert len(l_lim) == min(5, len(d_full))
        np.testing.assert_array_equal(d_lim, d_full[: len(d_lim)])
    with pytest.raises(IndexSpecError, match="range_filter=20.0 must be less than radius=10.0"):
        index.range_search(q, 10.0, 20.0)
    ip = VectorIndex.build(IndexSpec.parse("FLAT", "IP", {}, DIM, "FLOAT_VECTOR"), x)
    with pytest.raises(IndexSpecError, match="must be greater than radius"):
        ip.range_search(q, 5.0, 1.0)
    with pytest.raises(IndexSpecError, match="NaN"):
        ip.range_search(q, float("nan"))
    empty = VectorIndex.build(IndexSpec.parse("HNSW", "L2", {}, DIM, "FLOAT_VECTOR"), x[:0])
    assert all(len(r[1]) == 0 for r in empty.range_search(q, 10.0))
