"""Vectors stored in Arrow columns, as the numpy arrays FAISS takes (zero-copy where possible)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from indexer.convert import convert_vectors


def arrow_vectors(col: pa.Array | pa.ChunkedArray, vector_type: str, dim: int) -> np.ndarray:
    """float32 (n, dim) for float vector types; packed uint8 (n, dim / 8) for BINARY_VECTOR."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:  # a nullable (added) vector field: null rows index as zeros, never searched
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        width = dim // 8 if vector_type == "BINARY_VECTOR" else dim
        kind = np.uint8 if vector_type == "BINARY_VECTOR" else np.float32
        out = np.zeros((len(col), width), dtype=kind)
        if valid.any():
            out[valid] = arrow_vectors(col.filter(pa.array(valid)), vector_type, dim)
        return out
    n = len(col)
    if vector_type == "FLOAT_VECTOR":
        if pa.types.is_fixed_size_list(col.type):
            flat = col.values.slice(col.offset * dim, n * dim)
        else:  # list<float> as Delta hands it back
            flat = col.flatten()
        return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, dim)
    if vector_type not in ("FLOAT16_VECTOR", "BFLOAT16_VECTOR", "INT8_VECTOR", "BINARY_VECTOR"):
        # a scalar field here once cast its strings to fixed_size_binary[0] and failed cryptically
        raise ValueError(f"{vector_type} column is not a vector column FAISS can index")
    if not pa.types.is_fixed_size_binary(col.type):  # binary as Delta hands it back
        width = {"BINARY_VECTOR": dim // 8, "INT8_VECTOR": dim}.get(vector_type, 2 * dim)
        col = col.cast(pa.binary(width))
    width = col.type.byte_width
    raw = np.frombuffer(col.buffers()[1], dtype=np.uint8)[col.offset * width : (col.offset + n) * width]
    x = convert_vectors(raw.tobytes(), vector_type, dim)
    return x if vector_type == "BINARY_VECTOR" else x.astype(np.float32, copy=False)
