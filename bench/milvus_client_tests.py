"""Run Milvus's own client tests (``tests/python_client`` in the Milvus repository) against a fresh walvus.

    python -m bench.milvus_client_tests --repo PATH [--python PY] [--preset NAME | --select ID ...] [--tags L0 L1 L2]

`--repo` is a Milvus clone or a bare git directory (a fork carrying ``tests/python_client`` works;
the official repository is large): the folder is extracted from its HEAD with `git archive` into a
temporary directory, or used in place when PATH already is a ``tests/python_client`` folder.
Nothing of it is copied into walvus.

Milvus's harness needs packages walvus does not pin (faker, minio, ml_dtypes, scikit-learn,
pytest-assume, loguru, deepdiff, python-benedict, psutil, bm25s, rjieba, kubernetes, ...). Give
`--python` an interpreter that has them, e.g. a venv that sees walvus's packages through a .pth
file and adds the rest::

    python3.11 -m venv /tmp/mpc-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/mpc-venv/lib/python3.11/site-packages/walvus.pth
    /tmp/mpc-venv/bin/pip install faker minio ml_dtypes npy-append-array scikit-learn pytest-assume \\
        loguru deepdiff python-benedict psutil pytest-tagging delayed-assert pytest-rerunfailures bm25s rjieba kubernetes

(Newer harnesses also import ``pyetcd`` and ``ujson``: add ``etcd-sdk-python ujson``.)

`--preset` names a selection (see PRESETS): ``json-index`` (the default: the JSON-index classes of
``test_milvus_client_index.py`` and the index cases of ``test_milvus_client_json_path_index.py``,
issue 14), ``search``, ``query``, ``insert``, ``collection``, or ``crud`` (those four files).
`--select` gives pytest node ids instead. Prints pass/fail counts per test file and writes
bench/results/milvus_client_tests_<preset>_<tags>.json with the tests' commit (when `--repo` is a
git directory) and every failure's first error line.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from io import BytesIO
from pathlib import Path

from bench.harness import local_deployment, print_table, save

JSON_INDEX = [
    "milvus_client/test_milvus_client_index.py::TestMilvusClientJsonPathIndexInvalid",
    "milvus_client/test_milvus_client_index.py::TestMilvusClientJsonPathIndexValid",
    "milvus_client/test_milvus_client_json_path_index.py::TestMilvusClientInsertJsonPathIndexValid"
    "::test_milvus_client_insert_before_json_path_index",
    "milvus_client/test_milvus_client_json_path_index.py::TestMilvusClientInsertJsonPathIndexValid"
    "::test_milvus_client_insert_after_json_path_index",
]

CLIENT_FILES = {
    name: [f"milvus_client/test_milvus_client_{name}.py"]
    for name in ("search", "query", "insert", "collection")
}
PRESETS = {
    "json-index": JSON_INDEX,
    **CLIENT_FILES,
    "crud": [path for paths in CLIENT_FILES.values() for path in paths],
}


def tests_commit(repo: Path) -> str | None:
    """HEAD of ``repo`` when it is a git directory (a clone, a bare repository or a folder inside one)."""
    found = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else None


def tests_folder(repo: Path, into: Path) -> Path:
    """``tests/python_client`` of ``repo``: in place, or extracted from HEAD of a (bare) clone."""
    if (repo / "conftest.py").exists() and (repo / "milvus_client").is_dir():
        return repo
    if (repo / "tests" / "python_client" / "conftest.py").exists():
        return repo / "tests" / "python_client"
    raw = subprocess.run(
        ["git", "-C", str(repo), "archive", "HEAD", "tests/python_client"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(raw)) as tar:
        tar.extractall(into, filter="data")
    return into / "tests" / "python_client"


def run(folder: Path, python: str, select: list[str], tags: list[str], port: str, timeout: int) -> Path:
    report = folder / "walvus-junit.xml"
    cmd = [python, "-m", "pytest", *select, "--host", "127.0.0.1", "--port", port, "--tags", *tags]
    cmd += ["-p", "no:cacheprovider", "-q", "-rN", f"--junitxml={report}", "--timeout=300"]
    print(" ".join(cmd))
    with subprocess.Popen(cmd, cwd=folder) as pytest:
        try:
            pytest.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # interrupted, pytest still writes the report of the cases it ran
            print(f"stopping the run after {timeout}s: the report covers the cases run so far")
            pytest.send_signal(signal.SIGINT)
            pytest.wait(timeout=120)
    return report


def summarize(report: Path) -> tuple[list[list[object]], dict[str, object]]:
    root = ET.parse(report).getroot()
    per_file: dict[str, dict[str, int]] = {}
    failures: dict[str, str] = {}
    for case in root.iter("testcase"):
        if not case.get("classname"):
            continue  # the entry an interrupted session adds: not a test case
        where = case.get("classname", "").rsplit(".", 1)[0]
        stats = per_file.setdefault(where, {"passed": 0, "failed": 0, "skipped": 0})
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if case.find("skipped") is not None:
            stats["skipped"] += 1
        elif bad is not None:
            stats["failed"] += 1
            failures[f"{case.get('classname')}::{case.get('name')}"] = (bad.get("message") or "")[:300]
        else:
            stats["passed"] += 1
    rows = [[f, s["passed"], s["failed"], s["skipped"]] for f, s in sorted(per_file.items())]
    total = {k: sum(s[k] for s in per_file.values()) for k in ("passed", "failed", "skipped")}
    rows.append(["total", total["passed"], total["failed"], total["skipped"]])
    return rows, {"per_file": per_file, "total": total, "failures": failures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--repo", required=True, type=Path, help="Milvus clone, bare git dir, or tests/python_client"
    )
    ap.add_argument("--python", default=sys.executable, help="interpreter with Milvus's test requirements")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--preset", choices=sorted(PRESETS), help="a named selection (default json-index)")
    which.add_argument("--select", nargs="+", help="pytest node ids under tests/python_client")
    ap.add_argument("--tags", nargs="*", default=["L0", "L1", "L2"])
    ap.add_argument("--timeout", type=int, default=3600)
    args = ap.parse_args()
    preset = args.preset or ("custom" if args.select else "json-index")
    select = args.select or PRESETS[preset]
    with tempfile.TemporaryDirectory(prefix="milvus-tests-") as tmp:
        folder = tests_folder(args.repo, Path(tmp))
        with local_deployment(("streams", "indexer", "gateway"), WALVUS_SEAL_IDLE_SECONDS="3") as settings:
            _wait_port(int(settings["WALVUS_PORT"]))
            report = run(folder, args.python, select, args.tags, settings["WALVUS_PORT"], args.timeout)
        rows, data = summarize(report)
    print_table("Milvus client tests against walvus", ["test file", "passed", "failed", "skipped"], rows)
    meta = {"preset": preset, "select": select, "tags": args.tags, "tests_commit": tests_commit(args.repo)}
    name = f"milvus_client_tests_{preset}_{''.join(args.tags)}"
    print(f"wrote {save(name, {**meta, **data})}")


def _wait_port(port: int, timeout: float = 120) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"walvus did not open port {port}")


if __name__ == "__main__":
    main()
