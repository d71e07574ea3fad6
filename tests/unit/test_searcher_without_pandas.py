"""A searcher process refuses pandas: pyarrow then treats it as absent, and reads still work."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from searcher.without_pandas import refuse_pandas
assert refuse_pandas()
import pyarrow as pa, pyarrow.dataset as ds
import searcher.process  # everything a searcher imports
from schemas.sharding import key_hashes
t = ds.dataset(pa.table({"k": pa.array(["a", "hello"]), "v": [1, 2]})).to_table(filter=ds.field("v") > 1)
assert t.column("k").to_pylist() == ["hello"]
assert key_hashes(pa.array(["a", "hello"])).tolist() == [16805811524191467009, 16052016751233081268]
try:
    import pandas  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("pandas imported")
assert "pandas" not in sys.modules
print("ok")
"""


def test_a_searcher_process_runs_without_pandas() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
