"""Vector index layer: k-NN recall per index type and metric, filters, persistence, edge cases.

The float dataset is 20k x 64 float32 drawn from 50 Gaussian clusters, each with its own random
16-dimensional covariance plus a little isotropic noise (seed 0): realistic enough that graph and
quantised indexes have meaningful recall (isotropic noise makes every in-cluster point nearly
equidistant, which no quantiser can rank). Binary data is 20k x 256 bits from 50 random centres
with 15% of bits flipped.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexer import RowFilter, VectorIndex, brute_force_search
from schemas.index_spec import IndexSpec, IndexSpecError

N, DIM, CLUSTERS, LATENT, NQ, K = 20_000, 64, 50, 16, 200, 10
BITS = 256

# index type -> (build params, search params, {metric: recall@10 floor})
FLOAT_CASES = {
    "FLAT": ({}, {}, {"L2": 1.0, "IP": 1.0, "COSINE": 1.0}),
    "IVF_FLAT": ({}, {"nprobe": 16}, {"L2": 0.95, "IP": 0.95, "COSINE": 0.95}),
    "IVF_SQ8": ({}, {"nprobe": 16}, {"L2": 0.9, "IP": 0.9, "COSINE": 0.9}),
    "IVF_PQ": ({"m": 16}, {"nprobe": 16}, {"L2": 0.7, "IP": 0.25, "COSINE": 0.7}),
    "HNSW": ({"M": 16, "efConstruction": 100}, {"ef": 64}, {"L2": 0.95, "IP": 0.95, "COSINE": 0.95}),
    "SCANN": ({}, {"nprobe": 16, "reorder_k": 40}, {"L2": 0.9, "IP": 0.35, "COSINE": 0.9}),
}
METRICS = ("L2", "IP", "COSINE")


def clustered(n: int, rng: np.random.Generator, centres, shapes) -> np.ndarray:
    labels = rng.integers(0, CLUSTERS, n)
    z = rng.standard_normal((n, LATENT)).astype(np.float32)
    noise = 0.1 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (centres[labels] + np.einsum("nl,nld->nd", z, shapes[labels]) + noise).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread():
    """Single-threaded faiss: as fast here, and immune to OpenMP spin-waits on a busy machine."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = 4 * rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    shapes = rng.standard_normal((CLUSTERS, LATENT, DIM)).astype(np.float32) / np.sqrt(LATENT)
    return clustered(N, rng, centres, shapes), clustered(NQ, rng, centres, shapes)


@pytest.fixture(scope="module")
def bin_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 2, (CLUSTERS, BITS)).astype(bool)

    def sample(n: int) -> np.ndarray:
        flips = rng.random((n, BITS)) < 0.15
        return np.packbits(centres[rng.integers(0, CLUSTERS, n)] ^ flips, axis=1)

    return sample(N), sample(NQ)


@pytest.fixture(scope="module")
def built(data):
    cache: dict[tuple[str, str], VectorIndex] = {}

    def get(index_type: str, metric: str) -> VectorIndex:
        if (index_type, metric) not in cache:
            spec = IndexSpec.parse(index_type, metric, FLOAT_CASES[index_type][0], DIM, "FLOAT_VECTOR")
            cache[index_type, metric] = VectorIndex.build(spec, data[0])
        return cache[index_type, metric]

    return get


@pytest.fixture(scope="module")
def truth(data):
    return {m: brute_force_search(data[0], data[1], K, m) for m in METRICS}


def recall(labels: np.ndarray, expected: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(labels, expected, strict=True)]))


def exact_distance(x: np.ndarray, q: np.ndarray, labels: np.ndarray, metric: str) -> np.ndarray:
    xs = x[labels].astype(np.float64)
    qq = q[:, None, :].astype(np.float64)
    if metric == "L2":
        return ((xs - qq) ** 2).sum(-1)
    if metric == "COSINE":
        xs = xs / np.linalg.norm(xs, axis=-1, keepdims=True)
        qq = qq / np.linalg.norm(qq, axis=-1, keepdims=True)
    return (xs * qq).sum(-1)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index_type", list(FLOAT_CASES))
def test_float_recall(index_type, metric, data, built, truth):
    x, q = data
    index = built(index_type, metric)
    d, labels = index.search(q, K, FLOAT_CASES[index_type][1])
    assert d.shape == labels.shape == (NQ, K) and d.dtype == np.float32 and labels.dtype == np.int64
    assert (labels >= 0).all()
    # best first: ascending for L2, descending for IP / COSINE
    steps = np.diff(d, axis=1)
    assert (steps <= 1e-5).all() if metric != "L2" else (steps >= -1e-5).all()
    got = recall(labels, truth[metric][1])
    print(f"recall@{K} {index_type} {metric}: {got:.3f}")
    assert got >= FLOAT_CASES[index_type][2][metric]
    if index_type in ("FLAT", "IVF_FLAT", "HNSW", "SCANN"):  # these report exact distances
        np.testing.assert_allclose(d, exact_distance(x, q, labels, metric), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("index_type", list(FLOAT_CASES))
def test_allowed_bitmap_is_honoured(index_type, data, built):
    x, q = data
    rng = np.random.default_rng(1)
    index = built(index_type, "L2")
    params = FLOAT_CASES[index_type][1]
    for fraction in (0.3, 0.01):  # 0.01 takes the sparse-filter path (exact / all lists)
        allowed = rng.random(N) < fraction
        for mask in (allowed, RowFilter(allowed)):
            _, labels = index.search(q[:50], K, params, allowed=mask)
            assert allowed[labels[labels >= 0]].all()
        _, expected = brute_force_search(x, q[:50], K, "L2", allowed=allowed)
        floor = 0.9 if fraction == 0.01 and index_type in ("FLAT", "IVF_FLAT", "HNSW", "SCANN") else 0.2
        assert recall(labels, expected) >= floor
    none = np.zeros(N, dtype=bool)
    d, labels = index.search(q[:3], K, params, allowed=none)
    assert (labels == -1).all() and np.isinf(d).all()


@pytest.mark.parametrize("metric", ("HAMMING", "JACCARD"))
def test_binary_indexes(metric, bin_data):
    x, q = bin_data
    exact_d, _ = brute_force_search(x, q, K, metric)
    rng = np.random.default_rng(2)
    allowed = rng.random(N) < 0.3
    for index_type, floor in (("BIN_FLAT", 1.0), ("BIN_IVF_FLAT", 0.9)):
        index = VectorIndex.build(IndexSpec.parse(index_type, metric, {}, BITS, "BINARY_VECTOR"), x)
        d, labels = index.search(q, K, {"nprobe": 16})
        if floor == 1.0:
            np.testing.assert_array_equal(d, exact_d)  # exact; ties may order labels differently
        # tie-aware recall: a result counts when it is at least as close as the true k-th neighbour
        got = float(np.mean(d <= exact_d[:, -1:] + 1e-6))
        print(f"recall@{K} {index_type} {metric}: {got:.3f}")
        assert got >= floor
        _, flabels = index.search(q, K, {"nprobe": 16}, allowed=allowed)
        assert (flabels >= 0).all() and allowed[flabels].all()


def test_jaccard_and_hamming_values():
    a = np.packbits(np.array([[1, 1, 0, 0, 1, 0, 0, 0] * 2], dtype=bool), axis=1)
    b = np.packbits(np.array([[1, 0, 1, 0, 1, 0, 0, 0] * 2], dtype=bool), axis=1)
    zero = np.zeros((1, 2), dtype=np.uint8)
    x = np.vstack([a, b, zero])
    d, labels = brute_force_search(x, a, 3, "JACCARD")
    assert labels.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(d, [[0.0, 0.5, 1.0]])  # |a&b| = 4, |a|b| = 8
    d, _ = brute_force_search(x, a, 3, "HAMMING")
    np.testing.assert_array_equal(d, [[0, 4, 6]])
    d, _ = brute_force_search(zero, zero, 1, "JACCARD")
    assert d[0, 0] == 0.0  # two empty sets are identical


def test_brute_force_conventions_and_padding():
    x = np.array([[1, 0], [0, 2], [3, 0]], dtype=np.float32)
    q = np.array([[1, 0]], dtype=np.float32)
    d, labels = brute_force_search(x, q, 5, "L2")
    assert labels.tolist() == [[0, 2, 1, -1, -1]]
    assert d[0, :3].tolist() == [0.0, 4.0, 5.0] and np.isposinf(d[0, 3:]).all()
    d, labels = brute_force_search(x, q, 2, "IP")
    assert labels.tolist() == [[2, 0]] and d.tolist() == [[3.0, 1.0]]
    d, labels = brute_force_search(x, q, 4, "COSINE", allowed=np.array([False, True, True]))
    assert labels.tolist() == [[2, 1, -1, -1]]
    np.testing.assert_allclose(d[0, :2], [1.0, 0.0], atol=1e-6)
    assert np.isneginf(d[0, 2:]).all()


@pytest.mark.parametrize("index_type", ["FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "SCANN"])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_identical(index_type, mmap, data, built, tmp_path):
    _, q = data
    index = built(index_type, "COSINE")
    params = FLOAT_CASES[index_type][1]
    allowed = np.random.default_rng(3).random(N) < 0.5
    path = tmp_path / "segment.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, index.spec, mmap=mmap)
    assert loaded.ntotal == N and loaded.metric == "COSINE"
    for mask in (None, allowed):
        d0, l0 = index.search(q[:20], K, params, allowed=mask)
        d1, l1 = loaded.search(q[:20], K, params, allowed=mask)
        np.testing.assert_array_equal(l0, l1)
        np.testing.assert_array_equal(d0, d1)
    r0 = index.range_search(q[:5], 0.9, None, params)
    r1 = loaded.range_search(q[:5], 0.9, None, params)
    for (a, b), (c, e) in zip(r0, r1, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, e)


@pytest.mark.parametrize("index_type", ["BIN_FLAT", "BIN_IVF_FLAT"])
@pytest.mark.parametrize("mmap", [False, True])
def test_binary_save_load_identical(index_type, mmap, bin_data, tmp_path):
    x, q = bin_data
    spec = IndexSpec.parse(index_type, "JACCARD", {}, BITS, "BINARY_VECTOR")
    index = VectorIndex.build(spec, x[:5000])
    path = tmp_path / "segment.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, spec, mmap=mmap)
    for a, b in zip(index.search(q, K, {"nprobe": 8}), loaded.search(q, K, {"nprobe": 8}), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("index_type", ["IVF_FLAT", "IVF_SQ8", "IVF_PQ", "SCANN", "HNSW", "FLAT"])
@pytest.mark.parametrize("n", [0, 1, 10, 300])
def test_small_segments(index_type, n, data):
    x, q = data
    params = {"m": 8} if index_type == "IVF_PQ" else {}
    index = VectorIndex.build(IndexSpec.parse(index_type, "L2", params, DIM, "FLOAT_VECTOR"), x[:n])
    assert index.ntotal == n
    d, labels = index.search(q[:4], 5, {"nprobe": 128, "ef": 64, "reorder_k": 400})
    _, expected = brute_force_search(x[:n], q[:4], 5, "L2")
    assert labels.shape == (4, 5)
    assert ((labels == -1) == (expected == -1)).all()
    if index_type.startswith("IVF") and n >= 10:
        assert any("nlist clamped" in note for note in index.notes)
    if index_type in ("IVF_PQ", "SCANN") and 0 < n < 160:
        assert any("stored IVF" in note for note in index.notes)
    if n == 0:
        assert (labels == -1).all() and np.isposinf(d).all()
    elif index_type != "IVF_SQ8":  # IVF_PQ stores raw vectors below 2560 rows; SCANN re-ranks all
        for got, want in zip(labels, expected, strict=True):
            assert set(got[got >= 0]) == set(want[want >= 0])


def test_hnsw_ef_is_raised_to_k(data, built):
    _, q = data
    d, labels = built("HNSW", "L2").search(q[:3], 100, {"ef": 4})
    assert (labels >= 0).all() and len(set(labels[0])) == 100


def test_single_query_vector_and_progress(data):
    x, q = data
    calls: list[tuple[int, int]] = []
    spec = IndexSpec.parse("IVF_FLAT", "IP", {"nlist": 16}, DIM, "FLOAT_VECTOR")
    index = VectorIndex.build(spec, x[:2000], progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (2000, 2000)
    d, labels = index.search(q[0], 3, {"nprobe": 16})
    assert d.shape == (1, 3)
    with pytest.raises(IndexSpecError, match="do not match"):
        index.search(q[:, :10], 3)
    with pytest.raises(IndexSpecError, match="k="):
        index.search(q[:1], 0)
    with pytest.raises(IndexSpecError, match="nprobe"):
        index.search(q[:1], 3, {"nprobe": 0})
    with pytest.raises(IndexSpecError, match="allowed"):
        index.search(q[:1], 3, allowed=np.ones(5, dtype=bool))
    with pytest.raises(IndexSpecError, match="dim=32"):
        VectorIndex.build(IndexSpec.parse("FLAT", "L2", {}, 32, "FLOAT_VECTOR"), x[:10])
