"""IndexSpec parsing (defaults, AUTOINDEX, errors), GPU gating and vector conversion."""

from __future__ import annotations

import numpy as np
import pytest

import walvus.gpu
from indexer import VectorIndex
from schemas.index_spec import GpuUnavailableError, IndexSpec, IndexSpecError
from schemas.vector_arrays import convert_vectors
from walvus.gpu import gpu_available, require_gpu


def test_defaults_are_filled():
    assert IndexSpec.parse("IVF_FLAT", "L2", {}, 128, "FLOAT_VECTOR").params == {"nlist": 128}
    spec = IndexSpec.parse("ivf_pq", "ip", {"m": "16"}, 128, "FLOAT_VECTOR")
    assert (spec.index_type, spec.metric, spec.params) == (
        "IVF_PQ",
        "IP",
        {"nlist": 128, "m": 16, "nbits": 8},
    )
    assert IndexSpec.parse("HNSW", "COSINE", None, 8, "FLOAT_VECTOR").params == {
        "M": 30,
        "efConstruction": 360,
    }
    assert IndexSpec.parse("SCANN", "L2", {"with_raw_data": "false"}, 8, "FLOAT_VECTOR").params == {
        "nlist": 128,
        "with_raw_data": False,
    }
    assert IndexSpec.parse("BIN_IVF_FLAT", "JACCARD", {"nlist": 64}, 256, "BINARY_VECTOR").params == {
        "nlist": 64
    }
    # pymilvus-style nested params and unknown keys
    spec = IndexSpec.parse(
        "IVF_SQ8", "L2", {"params": '{"nlist": 256}', "metric_type": "L2"}, 8, "FLOAT_VECTOR"
    )
    assert spec.params == {"nlist": 256}
    assert hash(spec) == hash(IndexSpec.parse("IVF_SQ8", "L2", {"nlist": 256}, 8, "FLOAT_VECTOR"))


def test_autoindex_and_default_metric():
    spec = IndexSpec.parse("AUTOINDEX", None, {"M": 99}, 32, "FLOAT16_VECTOR")
    assert (spec.index_type, spec.metric, spec.requested_type) == ("HNSW", "COSINE", "AUTOINDEX")
    assert spec.params == {"M": 18, "efConstruction": 240}
    spec = IndexSpec.parse(None, None, {}, 64, "BINARY_VECTOR")
    assert (spec.index_type, spec.metric) == ("BIN_FLAT", "HAMMING")
    assert IndexSpec.parse("AUTOINDEX", "JACCARD", {}, 64, 100).metric == "JACCARD"  # DataType code


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("IVF_PQ", "L2", {"m": 7}, 128, "FLOAT_VECTOR"), "index type IVF_PQ: param m=7 must divide dim=128"),
        (("IVF_PQ", "L2", {}, 128, "FLOAT_VECTOR"), "index type IVF_PQ: param m is required"),
        (("IVF_FLAT", "L2", {"nlist": 0}, 8, "FLOAT_VECTOR"), r"param nlist=0 must be in \[1, 65536\]"),
        (("IVF_FLAT", "L2", {"nlist": "many"}, 8, "FLOAT_VECTOR"), "param nlist='many' must be an integer"),
        (("HNSW", "L2", {"M": 1}, 8, "FLOAT_VECTOR"), r"index type HNSW: param M=1 must be in \[2, 2048\]"),
        (
            ("SCANN", "L2", {"with_raw_data": "maybe"}, 8, "FLOAT_VECTOR"),
            "with_raw_data='maybe' must be true",
        ),
        (("SCANN", "L2", {}, 7, "FLOAT_VECTOR"), "SCANN: dim=7 must be even"),
        (("HNSW", "HAMMING", {}, 8, "FLOAT_VECTOR"), "metric HAMMING is not valid for FLOAT_VECTOR"),
        (("BIN_FLAT", "L2", {}, 64, "BINARY_VECTOR"), "metric L2 is not valid for BINARY_VECTOR"),
        (("BIN_FLAT", "HAMMING", {}, 64, "FLOAT_VECTOR"), "metric HAMMING is not valid"),
        (("HNSW", "HAMMING", {}, 64, "BINARY_VECTOR"), "index type HNSW cannot index a BINARY_VECTOR field"),
        (
            ("BIN_IVF_FLAT", "L2", {}, 64, "FLOAT_VECTOR"),
            "index type BIN_IVF_FLAT cannot index a FLOAT_VECTOR",
        ),
        (("DISKANN", "L2", {}, 8, "FLOAT_VECTOR"), "index type DISKANN is not supported"),
        (("FLAT", "MANHATTAN", {}, 8, "FLOAT_VECTOR"), "metric MANHATTAN is not valid"),
        (("BIN_FLAT", "HAMMING", {}, 12, "BINARY_VECTOR"), "multiple of 8"),
        (("FLAT", "L2", {}, 0, "FLOAT_VECTOR"), r"dim=0 must be in \[1, 32768\]"),
        (("FLAT", "L2", {}, 8, "SPARSE_FLOAT_VECTOR"), "FLAT cannot index a SPARSE_FLOAT_VECTOR field"),
    ],
)
def test_bad_specs(args, message):
    with pytest.raises(IndexSpecError, match=message):
        IndexSpec.parse(*args)


@pytest.mark.parametrize("index_type", ["GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_CAGRA", "GPU_BRUTE_FORCE"])
def test_gpu_types_need_a_gpu(index_type, monkeypatch):
    monkeypatch.setattr(walvus.gpu, "gpu_available", lambda: False)
    params = {"m": 8} if index_type == "GPU_IVF_PQ" else {}
    assert IndexSpec.parse(index_type, "L2", params, 64, "FLOAT_VECTOR").is_gpu  # a spec, GPU or not
    with pytest.raises(GpuUnavailableError) as err:
        require_gpu(index_type)  # what CreateIndex and the index worker check
    assert str(err.value) == (
        f"index type {index_type} needs a GPU build of faiss: pip install 'walvus[gpu]' on a machine with CUDA"
    )
    assert isinstance(err.value, IndexSpecError)
    spec = IndexSpec(index_type, "L2", {"nlist": 4, "m": 8, "nbits": 8}, 64)  # bypassing parse
    with pytest.raises(GpuUnavailableError):
        VectorIndex.build(spec, np.zeros((100, 64), dtype=np.float32))


def test_gpu_detection_matches_faiss():
    import faiss

    expected = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    assert gpu_available() == expected


def test_float16_and_bfloat16_conversion():
    values = np.array([[1.0, -2.5, 3.140625, 0.0], [65504.0, -0.5, 1e-3, 7.0]], dtype=np.float32)
    as_f16 = values.astype("<f2")
    out = convert_vectors(as_f16.tobytes(), "FLOAT16_VECTOR", 4)
    assert out.dtype == np.float32 and out.shape == (2, 4)
    np.testing.assert_array_equal(out, as_f16.astype(np.float32))
    rows = [r.tobytes() for r in as_f16]  # one bytes object per row, as pymilvus sends them
    np.testing.assert_array_equal(convert_vectors(rows, "FLOAT16_VECTOR", 4), out)
    np.testing.assert_array_equal(convert_vectors(as_f16, "FLOAT16_VECTOR", 4), out)

    bf16_bits = (values.view(np.uint32) >> 16).astype("<u2")  # truncation to bfloat16
    expected = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(expected[0], [1.0, -2.5, 3.140625, 0.0])  # exactly representable
    for raw in (bf16_bits.tobytes(), [r.tobytes() for r in bf16_bits], bf16_bits, bf16_bits.view(np.uint8)):
        np.testing.assert_array_equal(convert_vectors(raw, "BFLOAT16_VECTOR", 4), expected)
    assert convert_vectors(b"\x00\x3c\x00\xc0", "FLOAT16_VECTOR", 2).tolist() == [[1.0, -2.0]]
    assert convert_vectors(b"\x80\x3f\x20\xc0", "BFLOAT16_VECTOR", 2).tolist() == [[1.0, -2.5]]


def test_float_and_binary_conversion():
    floats = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(convert_vectors(floats.tobytes(), "FLOAT_VECTOR", 2), floats)
    np.testing.assert_array_equal(convert_vectors(floats.tolist(), "FLOAT_VECTOR", 2), floats)
    packed = convert_vectors([b"\x01\xff", b"\x00\x10"], "BINARY_VECTOR", 16)
    assert packed.dtype == np.uint8 and packed.tolist() == [[1, 255], [0, 16]]
    bits = np.unpackbits(packed, axis=1).astype(bool)
    np.testing.assert_array_equal(convert_vectors(bits, "BINARY_VECTOR", 16), packed)
    assert convert_vectors([], "FLOAT_VECTOR", 4).shape == (0, 4)
    with pytest.raises(ValueError, match="does not split into rows of 4"):
        convert_vectors(np.zeros(6, dtype=np.float32).tobytes(), "FLOAT_VECTOR", 4)
