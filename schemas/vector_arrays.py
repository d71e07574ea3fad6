"""Vectors as the numpy arrays the indexes take: from what clients send (``convert_vectors``) and
from stored Arrow columns (``arrow_vectors``, zero-copy where possible).

Float vectors of every kind become C-contiguous float32 (n, dim): FLOAT16_VECTOR arrives as
little-endian IEEE half bytes, BFLOAT16_VECTOR as little-endian bfloat16 bytes (the top 16 bits of
a float32, widened by a 16-bit shift). Binary vectors stay packed uint8 (n, dim / 8).
Accepted inputs: one bytes-like blob, a sequence of per-row bytes, a numpy array (raw bits as
uint8/uint16, or float16/bfloat16/float values) or nested lists of numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.index_spec import normalize_vector_type

_BYTES = (bytes, bytearray, memoryview)


def _as_blob(raw: Any) -> bytes | None:
    if isinstance(raw, _BYTES):
        return bytes(raw)
    if isinstance(raw, Sequence) and not isinstance(raw, str) and raw and isinstance(raw[0], _BYTES):
        return b"".join(bytes(r) for r in raw)
    return None


def _bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def convert_vectors(raw: Any, vector_type: Any, dim: int) -> np.ndarray:
    """Return float32 (n, dim) for float vector types, uint8 (n, dim // 8) for BINARY_VECTOR."""
    vtype = normalize_vector_type(vector_type)
    width = dim // 8 if vtype == "BINARY_VECTOR" else dim
    if width <= 0:
        raise ValueError(f"dim={dim} is too small for {vtype}")
    blob = _as_blob(raw)

    if vtype == "BINARY_VECTOR":
        if blob is not None:
            out = np.frombuffer(blob, dtype=np.uint8)
        else:
            arr = np.asarray(raw)
            if arr.dtype == np.bool_ and arr.ndim == 2 and arr.shape[1] == dim:
                arr = np.packbits(arr, axis=1)
            out = arr.astype(np.uint8, copy=False)
    elif blob is not None:
        if vtype == "FLOAT_VECTOR":
            out = np.frombuffer(blob, dtype="<f4")
        elif vtype == "FLOAT16_VECTOR":
            out = np.frombuffer(blob, dtype="<f2")
        elif vtype == "INT8_VECTOR":
            out = np.frombuffer(blob, dtype=np.int8)
        else:
            out = _bf16_bits_to_f32(np.frombuffer(blob, dtype="<u2"))
    else:
        arr = np.asarray(raw)
        if vtype == "BFLOAT16_VECTOR" and arr.dtype.name == "bfloat16":  # ml_dtypes arrays
            arr = arr.view(np.uint16)
        if vtype == "INT8_VECTOR" and arr.dtype == np.uint8:
            arr = arr.view(np.int8)
        elif arr.dtype == np.uint8 and vtype != "FLOAT_VECTOR":
            arr = arr.reshape(-1).view("<f2" if vtype == "FLOAT16_VECTOR" else "<u2")
        if vtype == "FLOAT16_VECTOR" and arr.dtype == np.uint16:
            arr = arr.view("<f2")
        elif vtype == "BFLOAT16_VECTOR" and arr.dtype == np.uint16:
            arr = _bf16_bits_to_f32(arr)
        out = arr

    if out.size % width:
        raise ValueError(f"{vtype} data of {out.size} values does not split into rows of {width}")
    return np.ascontiguousarray(
        out.reshape(-1, width), dtype=np.uint8 if vtype == "BINARY_VECTOR" else np.float32
    )


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
