"""Primary key -> shard: stable forever (golden values), in range, and evenly spread."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pytest

from schemas.segments import SegmentSealed, decode_announcement, segment_id
from schemas.sharding import key_hashes, shard_of

INT_KEYS = [0, 1, 42, -7, 2**62]
INT_HASHES = [0, 6238072747940578789, 12058926934050108962, 15824578273388328691, 1360429390938723525]
STR_KEYS = ["a", "hello", "walvus", ""]
STR_HASHES = [16805811524191467009, 16052016751233081268, 15018016727075031597, 14047708306725336525]


def test_golden_int_hashes() -> None:
    """If this fails, every stored key would move to another shard: never change the hash."""
    assert key_hashes(np.array(INT_KEYS, dtype=np.int64)).tolist() == INT_HASHES
    assert key_hashes(pa.array(INT_KEYS, pa.int64())).tolist() == INT_HASHES


def test_int_hashes_are_pandas_hash_array() -> None:
    """Integer keys hash without pandas, bit for bit as ``pandas.util.hash_array`` did."""
    pd = pytest.importorskip("pandas")
    keys = np.random.default_rng(3).integers(-(2**63), 2**63 - 1, size=10_000, dtype=np.int64)
    want = pd.util.hash_array(keys, hash_key="walvus-shard-key")
    assert np.array_equal(key_hashes(keys), want)
    assert np.array_equal(key_hashes(keys.astype(np.uint64)), want)


def test_string_hashes_without_pandas_are_pandas_hash_array(monkeypatch) -> None:
    """A searcher process has no pandas: its SipHash gives the keys the same hashes."""
    keys = ["", "a", "hello", "walvus", "exactly8", "more than eight bytes", "ünïcødé ключ 鍵", "x" * 300]
    want = key_hashes(np.array(keys, dtype=object))
    monkeypatch.setitem(sys.modules, "pandas", None)  # ``import pandas`` now fails
    assert key_hashes(pa.array(keys)).tolist() == want.tolist()
    assert key_hashes(pa.array(STR_KEYS)).tolist() == STR_HASHES


def test_golden_string_hashes() -> None:
    assert key_hashes(pa.array(STR_KEYS)).tolist() == STR_HASHES
    assert key_hashes(pa.array(STR_KEYS, pa.large_string())).tolist() == STR_HASHES
    assert key_hashes(np.array(STR_KEYS, dtype=object)).tolist() == STR_HASHES
    assert key_hashes(np.array(STR_KEYS)).tolist() == STR_HASHES  # numpy unicode dtype


def test_golden_shards() -> None:
    assert shard_of(np.array(INT_KEYS), 4).tolist() == [0, 1, 2, 3, 1]
    assert shard_of(np.array(INT_KEYS), 2).tolist() == [0, 1, 0, 1, 1]
    assert shard_of(pa.array(STR_KEYS), 4).tolist() == [1, 0, 1, 1]
    assert shard_of(pa.array(STR_KEYS), 3).tolist() == [h % 3 for h in STR_HASHES]


def test_same_key_same_shard_whatever_the_container() -> None:
    keys = [3, 99, -1, 123456789]
    ref = shard_of(np.array(keys, dtype=np.int64), 8)
    assert shard_of(pa.array(keys, pa.int64()), 8).tolist() == ref.tolist()
    assert shard_of(pa.array(keys, pa.int32()), 8).tolist() == ref.tolist()
    assert shard_of(pa.chunked_array([keys[:2], keys[2:]], pa.int64()), 8).tolist() == ref.tolist()
    # one key at a time gives the same answer as the whole batch
    assert [int(shard_of(np.array([k]), 8)[0]) for k in keys] == ref.tolist()


@pytest.mark.parametrize("n", [1, 0])
def test_one_shard_is_shard_zero(n: int) -> None:
    out = shard_of(pa.array(["x", "y"]), n)
    assert out.tolist() == [0, 0] and out.dtype == np.int32


@pytest.mark.parametrize("num_shards", [2, 3, 4, 16])
@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(np.arange(20_000), id="sequential-ints"),
        pytest.param(np.arange(0, 160_000, 8), id="strided-ints"),
        pytest.param(pa.array([f"user-{i}" for i in range(20_000)]), id="strings"),
    ],
)
def test_in_range_and_evenly_spread(keys, num_shards: int) -> None:
    shards = shard_of(keys, num_shards)
    assert shards.dtype == np.int32
    assert shards.min() >= 0 and shards.max() < num_shards
    counts = np.bincount(shards, minlength=num_shards)
    expected = len(keys) / num_shards
    assert np.all(np.abs(counts - expected) < 0.1 * expected), counts


def test_segment_ids_are_deterministic_and_announcements_roundtrip() -> None:
    assert segment_id(0, 5) == 5
    assert segment_id(3, 5) == (3 << 48) | 5
    s = SegmentSealed(1, "c", 3, segment_id(3, 5), 10, 2, 5, 9, 4)
    assert decode_announcement(s.to_json()) == s
    with pytest.raises(ValueError, match="unknown announcement"):
        decode_announcement(b'{"kind": "what"}')
