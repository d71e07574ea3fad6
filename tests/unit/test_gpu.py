"""GPU_* indexes without a GPU: spec parsing, build errors, CPU fallback search of stored GPU
index files, and the search-placement decision (with a fake faiss GPU module)."""

from __future__ import annotations

import types

import faiss
import numpy as np
import pytest

import indexer.gpu
import walvus.gpu
from indexer import VectorIndex
from indexer.gpu import GPU_MAX_K, check_gpu_search_mode, place_for_search
from schemas.index_spec import GpuUnavailableError, IndexSpec, IndexSpecError

DIM, N, NQ, K = 32, 3000, 50, 10


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((20, DIM)).astype(np.float32) * 4
    base = centres[rng.integers(0, 20, N)] + rng.standard_normal((N, DIM)).astype(np.float32)
    queries = centres[rng.integers(0, 20, NQ)] + rng.standard_normal((NQ, DIM)).astype(np.float32)
    exact = faiss.IndexFlatL2(DIM)
    exact.add(base)
    _, gt = exact.search(queries, K)
    return base, queries, gt


def recall(labels: np.ndarray, gt: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(labels, gt, strict=True)]))


def parse(index_type: str, params: dict | None = None) -> IndexSpec:
    return IndexSpec.parse(index_type, "L2", params or {}, DIM, "FLOAT_VECTOR")


# ---- spec parsing --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("index_type", "params", "expected"),
    [
        ("GPU_BRUTE_FORCE", {}, {}),
        ("GPU_IVF_FLAT", {}, {"nlist": 128, "cache_dataset_on_device": False}),
        (
            "GPU_IVF_FLAT",
            {"nlist": "1024", "cache_dataset_on_device": "true"},
            {"nlist": 1024, "cache_dataset_on_device": True},
        ),
        ("GPU_IVF_PQ", {"m": 8}, {"nlist": 128, "m": 8, "nbits": 8, "cache_dataset_on_device": False}),
        (
            "GPU_IVF_PQ",
            {"nlist": 64, "m": 16, "nbits": 4},
            {"nlist": 64, "m": 16, "nbits": 4, "cache_dataset_on_device": False},
        ),
        (
            "GPU_CAGRA",
            {},
            {
                "intermediate_graph_degree": 128,
                "graph_degree": 64,
                "build_algo": "IVF_PQ",
                "cache_dataset_on_device": False,
                "adapt_for_cpu": False,
            },
        ),
        (
            "GPU_CAGRA",
            {
                "intermediate_graph_degree": 64,
                "graph_degree": 32,
                "build_algo": "nn_descent",
                "adapt_for_cpu": "true",
            },
            {
                "intermediate_graph_degree": 64,
                "graph_degree": 32,
                "build_algo": "NN_DESCENT",
                "cache_dataset_on_device": False,
                "adapt_for_cpu": True,
            },
        ),
    ],
)
def test_gpu_specs_use_milvus_names_and_defaults(index_type, params, expected, monkeypatch):
    spec = parse(index_type, params)  # the same with or without a GPU (a CPU-only searcher parses it too)
    assert spec.is_gpu and spec.index_type == index_type
    assert dict(spec.params) == expected


@pytest.mark.parametrize(
    ("index_type", "params", "message"),
    [
        ("GPU_IVF_PQ", {}, "index type GPU_IVF_PQ: param m is required"),
        ("GPU_IVF_PQ", {"m": 5}, "param m=5 must divide dim=32"),
        ("GPU_IVF_FLAT", {"nlist": 0}, r"param nlist=0 must be in \[1, 65536\]"),
        ("GPU_CAGRA", {"graph_degree": 256}, "graph_degree=256 must be <= intermediate_graph_degree=128"),
        ("GPU_CAGRA", {"build_algo": "HNSW"}, "build_algo='HNSW' must be one of IVF_PQ, NN_DESCENT"),
        ("GPU_CAGRA", {"adapt_for_cpu": "yes"}, "param adapt_for_cpu='yes' must be true or false"),
        (
            "GPU_IVF_FLAT",
            {"cache_dataset_on_device": 2},
            "param cache_dataset_on_device=2 must be true or false",
        ),
    ],
)
def test_bad_gpu_params_are_refused_without_a_gpu_too(index_type, params, message):
    with pytest.raises(IndexSpecError, match=message):
        parse(index_type, params)


@pytest.mark.parametrize("index_type", ["GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_CAGRA", "GPU_BRUTE_FORCE"])
def test_building_without_a_gpu_is_a_clear_error(index_type, monkeypatch, data):
    monkeypatch.setattr(walvus.gpu, "gpu_available", lambda gpu=None: False)
    spec = parse(index_type, {"m": 8} if index_type == "GPU_IVF_PQ" else {})
    with pytest.raises(GpuUnavailableError, match=f"index type {index_type} needs a GPU build of faiss"):
        VectorIndex.build(spec, data[0][:500])


# ---- stored GPU index files on a CPU-only searcher -----------------------------------------
def stored_file(index_type: str, base: np.ndarray, path) -> str:
    """What build_gpu_index stores for each type, made with faiss-cpu."""
    if index_type == "GPU_CAGRA":
        index = faiss.IndexHNSWCagra(DIM, 16, faiss.METRIC_L2)
    elif index_type == "GPU_BRUTE_FORCE":
        index = faiss.IndexFlat(DIM, faiss.METRIC_L2)
    else:
        desc = "IVF32,Flat" if index_type == "GPU_IVF_FLAT" else "IVF32,PQ8x8np"
        index = faiss.index_factory(DIM, desc, faiss.METRIC_L2)
        index.train(base)
    index.add(base)
    faiss.write_index(index, str(path))
    return str(path)


CPU_FALLBACK = {  # type -> (params, search params, stored faiss class, recall floor)
    "GPU_BRUTE_FORCE": ({}, {}, faiss.IndexFlat, 1.0),
    "GPU_IVF_FLAT": ({"nlist": 32}, {"nprobe": 32}, faiss.IndexIVFFlat, 1.0),
    "GPU_IVF_PQ": ({"nlist": 32, "m": 8}, {"nprobe": 32}, faiss.IndexIVFPQ, 0.5),
    "GPU_CAGRA": (
        {"graph_degree": 16, "intermediate_graph_degree": 32},
        {"itopk_size": 64},
        faiss.IndexHNSW,
        0.95,
    ),
}


@pytest.mark.parametrize("index_type", list(CPU_FALLBACK))
def test_stored_gpu_index_searches_on_cpu(index_type, data, tmp_path, monkeypatch):
    monkeypatch.setattr(indexer.gpu, "gpu_available", lambda gpu=None: False)
    base, queries, gt = data
    params, search_params, cls, floor = CPU_FALLBACK[index_type]
    spec = parse(index_type, params)
    index = VectorIndex.load(stored_file(index_type, base, tmp_path / "x.faiss"), spec, gpu_search="auto")
    assert index.device == "cpu" and isinstance(index.faiss_index, cls)
    _, labels = index.search(queries, K, search_params)
    assert recall(labels, gt) >= floor
    allowed = np.zeros(N, dtype=bool)
    allowed[::3] = True
    _, labels = index.search(queries, K, search_params, allowed=allowed)
    assert np.all(labels % 3 == 0)


def test_cagra_search_params_are_checked_on_the_cpu_fallback(data, tmp_path):
    base, queries, _ = data
    spec = parse("GPU_CAGRA")
    index = VectorIndex.load(stored_file("GPU_CAGRA", base, tmp_path / "c.faiss"), spec)
    with pytest.raises(IndexSpecError, match="search param search_width=-1 must be >= 0"):
        index.search(queries, K, {"search_width": -1})
    with pytest.raises(IndexSpecError, match="search param itopk_size='x' must be an integer"):
        index.search(queries, K, {"itopk_size": "x"})


# ---- where searches run: a fake faiss GPU module ------------------------------------------
class FakeGpuIndex:
    """Stands in for a GpuIndex*: records each search and answers from the CPU index."""

    def __init__(self, cpu=None) -> None:
        self.cpu = cpu
        self.calls: list = []

    def copyFrom(self, cpu) -> None:  # noqa: N802 - faiss's name
        self.cpu = cpu

    def search(self, q, k, params=None):
        self.calls.append((len(q), k, params))
        sp = None
        if getattr(params, "nprobe", None):
            sp = faiss.SearchParametersIVF(nprobe=params.nprobe)
        elif getattr(params, "itopk_size", None):
            sp = faiss.SearchParametersHNSW(efSearch=params.itopk_size)
        return self.cpu.search(q, k, params=sp)


def fake_gpu(gpus: int = 1, cagra: bool = True, fail: bool = False):
    made: list[FakeGpuIndex] = []

    def to_gpu(res, device, cpu):
        if fail:
            raise RuntimeError("out of memory")
        made.append(FakeGpuIndex(cpu))
        return made[-1]

    def cagra_index(res, d, metric, cfg):
        made.append(FakeGpuIndex())
        return made[-1]

    mod = types.SimpleNamespace(
        get_num_gpus=lambda: gpus,
        StandardGpuResources=object,
        index_cpu_to_gpu=to_gpu,
        SearchParametersIVF=types.SimpleNamespace,
        made=made,
    )
    if cagra:
        mod.GpuIndexCagra = cagra_index
        mod.GpuIndexCagraConfig = object
        mod.SearchParametersCagra = types.SimpleNamespace
    return mod


@pytest.mark.parametrize(
    ("index_type", "mode", "gpu", "placed"),
    [
        ("GPU_IVF_FLAT", "auto", fake_gpu(), True),
        ("GPU_IVF_FLAT", "AUTO", fake_gpu(), True),
        ("GPU_IVF_FLAT", "off", fake_gpu(), False),
        ("GPU_IVF_FLAT", "auto", fake_gpu(gpus=0), False),
        ("GPU_BRUTE_FORCE", "auto", fake_gpu(), True),
        ("GPU_CAGRA", "auto", fake_gpu(), True),
        ("GPU_CAGRA", "auto", fake_gpu(cagra=False), False),  # no cuVS: HNSW on the CPU
        ("IVF_FLAT", "auto", fake_gpu(), False),  # only GPU_* types move
        ("GPU_IVF_FLAT", "auto", faiss, False),  # faiss-cpu here
    ],
)
def test_search_placement(index_type, mode, gpu, placed, data, tmp_path):
    base = data[0]
    stored = "GPU_CAGRA" if index_type == "GPU_CAGRA" else "GPU_IVF_FLAT"
    if index_type == "GPU_BRUTE_FORCE":
        stored = index_type
    cpu = faiss.read_index(stored_file(stored, base, tmp_path / "p.faiss"))
    spec = IndexSpec(index_type, "L2", {}, DIM)
    gpu_index = place_for_search(spec, cpu, mode, gpu)
    assert (gpu_index is not None) == placed
    if placed:
        assert gpu.made[-1].cpu is cpu


def test_cagra_adapted_for_cpu_stays_on_the_cpu(data, tmp_path):
    cpu = faiss.read_index(stored_file("GPU_CAGRA", data[0], tmp_path / "a.faiss"))
    spec = parse("GPU_CAGRA", {"adapt_for_cpu": True})
    assert place_for_search(spec, cpu, "auto", fake_gpu()) is None
    assert place_for_search(parse("GPU_CAGRA"), cpu, "auto", fake_gpu()) is not None


def test_bad_gpu_search_mode():
    assert check_gpu_search_mode(" Off ") == "off"
    with pytest.raises(IndexSpecError, match="gpu search mode 'on' must be one of auto, off"):
        check_gpu_search_mode("on")


def test_failed_move_to_gpu_is_an_index_error(data, tmp_path):
    cpu = faiss.read_index(stored_file("GPU_IVF_FLAT", data[0], tmp_path / "f.faiss"))
    with pytest.raises(
        IndexSpecError, match="GPU_IVF_FLAT: moving the index to the GPU failed: out of memory"
    ):
        place_for_search(IndexSpec("GPU_IVF_FLAT", "L2", {}, DIM), cpu, "auto", fake_gpu(fail=True))


@pytest.mark.parametrize("index_type", ["GPU_IVF_FLAT", "GPU_CAGRA"])
def test_unfiltered_knn_runs_on_the_gpu_the_rest_on_the_cpu(index_type, data, tmp_path):
    base, queries, gt = data
    gpu = fake_gpu()
    spec = parse(index_type)
    path = stored_file(index_type, base, tmp_path / "g.faiss")
    index = VectorIndex.load(path, spec, gpu_search="auto", gpu_module=gpu)
    assert index.device == "gpu"
    fake = gpu.made[-1]
    params = {"nprobe": 32} if index_type == "GPU_IVF_FLAT" else {"itopk_size": 96, "search_width": 4}
    _, labels = index.search(queries, K, params)
    assert recall(labels, gt) >= 0.95
    ((nq, k, sp),) = fake.calls
    assert (nq, k) == (NQ, K)
    if index_type == "GPU_IVF_FLAT":
        assert sp.nprobe == 32
    else:
        assert (sp.itopk_size, sp.search_width) == (96, 4)
    allowed = np.ones(N, dtype=bool)
    allowed[0] = False
    index.search(queries, K, params, allowed=allowed)  # filters: CPU copy
    index.search(queries[:1], GPU_MAX_K + 1, params)  # past the GPU's k limit: CPU copy
    index.range_search(queries[:2], 1.0, params=params if index_type == "GPU_IVF_FLAT" else None)
    assert len(fake.calls) == 1
    assert VectorIndex.load(path, spec, gpu_search="off", gpu_module=gpu).device == "cpu"


# ---- the searcher loads a stored GPU index without a GPU ----------------------------------
def test_searcher_attaches_a_gpu_cagra_file_without_a_gpu(data, tmp_path, monkeypatch):
    import pyarrow as pa

    from schemas.catalog import CollectionInfo, IndexInfo
    from schemas.collection import CollectionSchema, FieldSchema
    from schemas.types import DataType
    from searcher.collection import LoadedCollection
    from searcher.segment import Container

    monkeypatch.setattr(indexer.gpu, "gpu_available", lambda gpu=None: False)
    base, queries, gt = data
    schema = CollectionSchema(
        fields=(
            FieldSchema("id", DataType.INT64, is_primary=True),
            FieldSchema("v", DataType.FLOAT_VECTOR, dim=DIM),
        )
    )
    info = CollectionInfo(
        "c",
        1,
        schema,
        indexes={"v": IndexInfo("v", "v", "GPU_CAGRA", "L2", {"graph_degree": 16}, index_id=5)},
    )
    coll = LoadedCollection(info, store=None, gpu_search="auto")  # type: ignore[arg-type]
    rows = pa.table(
        {
            "id": pa.array(range(N), pa.int64()),
            "_seq": pa.array(range(N), pa.int64()),
            "_offset": pa.array(range(N), pa.int64()),
            "_partition": pa.array(["_default"] * N),
        }
    )
    container = Container(rows, "id", sealed=True, segment_id=7)
    coll.containers = (container,)
    coll.attach_index(7, "v", 5, stored_file("GPU_CAGRA", base, tmp_path / "seg7.faiss"))
    _, index = container.indexes["v"]
    assert index.index_type == "GPU_CAGRA" and index.device == "cpu"
    _, labels = index.search(queries, K, {"itopk_size": 64})
    assert recall(labels, gt) >= 0.95
