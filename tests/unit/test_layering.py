"""The house rules, read from every module's imports (no module is imported to check them).

* ``schemas/`` depends on nothing of ours: it imports only ``schemas``.
* ``walvus/`` (the runtime and the declared interfaces: log, segment and index stores, the
  searcher's interface) imports no stage at module level; its CLI and settings reach a stage
  inside a function, when that stage runs.
* A stage (``streams``, ``indexer``, ``searcher``, ``gateway``, ``cdc``) imports no other stage's
  internals, at any level: stages meet through ``schemas/``, ``walvus/`` and the declared
  interfaces in ``INTERFACES`` (a stage's package root, importing the stage's modules only).
  The indexer's interface is its search kernels, which reach neither Kafka nor Delta.
* Only ``walvus/storage.py`` imports ``deltalake``: everything else reads the segment store
  through its ``TableSnapshot``.

``ALLOWED`` lists the imports that still break a rule, each with its reason; an entry that no
longer matches an import fails the test, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("streams", "indexer", "searcher", "gateway", "cdc")
PACKAGES = ("schemas", "walvus", *STAGES)

# a stage's package root that other stages may import -> what it offers
INTERFACES = {"indexer": "the search kernels: FAISS indexes, exact search, interim graphs, sparse, top-k"}
KERNEL_FREE_OF = ("confluent_kafka", "deltalake", "faust", "walvus.log", "walvus.storage", "walvus.settings")

# (importing module, imported module) -> why it is still there
ALLOWED: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) of every import in the file, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                out.extend((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                out.append((target, top))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), True)
    return out


def violations() -> dict[tuple[str, str], str]:
    """(importing module, imported module) -> the rule it breaks."""
    found: dict[tuple[str, str], str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            importer = module_name(path)
            for target, top in imports(path):
                other = target.split(".")[0]
                if other not in PACKAGES or other == package:
                    continue
                if package == "schemas":
                    found[(importer, target)] = "schemas/ imports nothing of ours"
                elif package == "walvus" and top and other in STAGES:
                    found[(importer, target)] = "walvus/ imports no stage at module level"
                elif package in STAGES and other in STAGES and target not in INTERFACES:
                    found[(importer, target)] = "a stage imports no other stage's internals"
    return found


def test_every_module_keeps_the_layering_rules() -> None:
    broken = {k: rule for k, rule in violations().items() if k not in ALLOWED}
    assert not broken, "\n".join(f"{a} imports {b}: {rule}" for (a, b), rule in sorted(broken.items()))


def test_every_allowed_exception_is_still_needed() -> None:
    stale = set(ALLOWED) - set(violations())
    assert not stale, f"no longer imported, remove from ALLOWED: {sorted(stale)}"


def test_the_checker_resolves_relative_imports_and_sees_function_level_ones() -> None:
    assert ("schemas.filters.compiler", True) in imports(ROOT / "schemas" / "filters" / "__init__.py")
    assert ("gateway.server", False) in imports(ROOT / "walvus" / "cli.py")  # inside ``main``


# modules outside walvus/storage.py that may import deltalake, each with its reason
DELTALAKE_ALLOWED: dict[str, str] = {
    "bench.ingest": "measures a raw write_deltalake of the same rows, the bound walvus is compared with",
}


def deltalake_importers() -> set[str]:
    """Every module of the packages and of ``bench/`` that imports ``deltalake``, at any level."""
    found = set()
    for package in (*PACKAGES, "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if any(target.split(".")[0] == "deltalake" for target, _ in imports(path)):
                found.add(module_name(path))
    return found


def test_only_the_segment_store_imports_deltalake() -> None:
    found = deltalake_importers()
    assert "walvus.storage" in found  # the checker sees the one that does
    stray = found - {"walvus.storage", *DELTALAKE_ALLOWED}
    assert not stray, f"read Delta tables through walvus.storage.SegmentStore instead: {sorted(stray)}"
    stale = set(DELTALAKE_ALLOWED) - found
    assert not stale, f"no longer imports deltalake, remove from DELTALAKE_ALLOWED: {sorted(stale)}"


# every Kafka consumer is built by the log interface: its settings (isolation, commits, offset
# resets, assignors) are chosen in one place, and its errors become ``LogUnavailable`` there
LOG_READERS = {"walvus.log", "walvus.log_tail"}


def consumer_importers() -> set[str]:
    """Modules (outside tests) that import confluent-kafka's ``Consumer``."""
    found: set[str] = set()
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).parts
        if rel[0] in ("tests", ".venv") or rel[0].startswith("."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confluent_kafka"):
                if any(a.name == "Consumer" for a in node.names):
                    found.add(module_name(path))
            elif isinstance(node, ast.Import) and any(
                a.name.startswith("confluent_kafka") for a in node.names
            ):
                found.add(module_name(path))  # ``confluent_kafka.Consumer`` through the module
    return found


def test_only_the_log_interface_builds_kafka_consumers() -> None:
    stray = consumer_importers() - LOG_READERS
    assert not stray, f"build readers with walvus.log_tail (Tail, GroupMember) instead: {sorted(stray)}"
    assert consumer_importers() == LOG_READERS


def test_the_indexer_interface_reaches_neither_kafka_nor_delta() -> None:
    """What ``import indexer`` loads (the package root and every indexer module it reaches)."""
    seen, todo = set(), ["indexer"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = ROOT / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for target, top in imports(path):
            assert not target.startswith(KERNEL_FREE_OF), f"{name} imports {target}"
            if top and target.split(".")[0] == "indexer":
                todo.append(target)
    assert {"indexer.index", "indexer.interim", "indexer.sparse"} <= seen
