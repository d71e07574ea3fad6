"""A ``walvus searcher`` process runs without pandas.

pyarrow imports pandas, when it is installed, the first time it converts Python values
(``pa.array``, ``pa.scalar``), to recognise pandas objects. A searcher never uses pandas, and
the import costs each searcher process about 30 MB of private memory (48 MB RSS): the fixed cost
every extra searcher pays again. Refusing the import before pyarrow is loaded makes pyarrow treat
pandas as absent; ``schemas.sharding`` then hashes string keys with ``schemas.siphash``.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _RefusePandas(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError("a walvus searcher process runs without pandas", name=fullname)
        return None


def refuse_pandas() -> bool:
    """Make ``import pandas`` fail in this process; False when pandas is already imported."""
    if "pandas" in sys.modules:
        return False
    if not any(isinstance(f, _RefusePandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _RefusePandas())
    return True


__all__ = ["refuse_pandas"]
