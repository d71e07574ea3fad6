"""``WriteApi`` declares what the gateway calls on the write API: ``Walvus`` and the memory double
have every member it names, with the same parameters, and the gateway takes nothing looser."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from tests.memory import memory_walvus
from walvus.api import Walvus
from walvus.write_api import WriteApi

ROOT = Path(__file__).resolve().parents[2]


def _attributes() -> set[str]:
    return set(WriteApi.__annotations__)


def _methods() -> set[str]:
    return {n for n, v in vars(WriteApi).items() if inspect.isfunction(v) and not n.startswith("_")}


def _shape(fn: object) -> list[tuple[str, object, object]]:
    """Parameter names, kinds and defaults: what a caller relies on (annotations are strings)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]


def test_the_protocol_names_the_gateways_surface() -> None:
    assert {"catalog", "store", "kafka", "ns", "limits", "clock", "snapshots"} <= _attributes()
    assert {"create_collection", "insert", "upsert", "delete", "flush", "publish"} <= _methods()


@pytest.mark.parametrize("name", sorted(_methods()))
def test_walvus_offers_each_method_with_the_same_parameters(name: str) -> None:
    assert _shape(getattr(Walvus, name)) == _shape(getattr(WriteApi, name))


def test_the_memory_double_satisfies_the_protocol() -> None:
    w = memory_walvus()
    missing = sorted(n for n in _attributes() | _methods() if not hasattr(w, n))
    assert missing == []
    assert isinstance(w, WriteApi)


def test_an_object_lacking_a_member_does_not_satisfy_it() -> None:
    class Partial:
        def insert(self, name: str, data: object, partition: str | None = None) -> None: ...

    assert not isinstance(Partial(), WriteApi)


def test_the_gateway_takes_the_write_api_typed() -> None:
    """No gateway function or constructor takes ``walvus`` as ``Any``."""
    loose = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.arg) and node.arg == "walvus" and node.annotation is not None:
                if ast.unparse(node.annotation) != "WriteApi":
                    loose.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert loose == []
