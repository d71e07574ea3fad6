"""Run the pymilvus repository's example programs, unchanged but for the address, against a fresh walvus.

    python -m bench.pymilvus_examples [--repo PATH] [--only name,...] [--timeout 120] [--extra-path DIR]
        [--authorization] [--searchers N]

`--repo` is a clone of https://github.com/milvus-io/pymilvus (a bare git directory works too): the
examples are extracted from its HEAD at run time with `git archive`, into a temporary directory.
Each example runs as its own subprocess, in its own folder, after every alias, collection and
database other than `default`, user other than `root`, role other than `admin` and `public`, and
privilege group was dropped; `--authorization` runs the deployment with authorization enabled
(`WALVUS_AUTHORIZATION_ENABLED`: logins as stored users, every call checked), which examples that
log in as `root` (rbac.py) pass and those that connect without credentials do not;
`--searchers N` serves the reads from N ``walvus searcher`` processes (``WALVUS_SEARCHERS=remote``:
the gateway scatters each read over them) instead of the searcher inside the gateway; its results go to
``pymilvus_examples_searchers.json``;
its address (`localhost:19530`, `MilvusClient()`, `MILVUS_URI`, pymilvus's default port) is
rewritten to the deployment's.
Prints a table and writes bench/results/pymilvus_examples.json: per example, passed or failed, the
last error line, and the gateway log's error lines written while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, local_deployment, print_table

DEFAULT_REPO = "/work/.mirror/milvus-io+pymilvus/repo"

# Examples not run, and why. Folders match every file under them.
SKIPPED = {
    "bulk_import/": "bulk import: needs object storage (MinIO/S3) and the import service",
    "orm_deprecated/bulk_import/": "bulk import: needs object storage (MinIO/S3) and the import service",
    "cert/": "TLS with the example's own certificates",
    "milvus_model/": "downloads embedding models",
    "manage_milvus_client/": "not an example program (a how-to page's code)",
    "text_embedding.py": "calls a cloud embedding provider (OpenAI)",
    "orm_deprecated/hello_text_embedding.py": "calls a cloud embedding provider (OpenAI)",
    "function_edit.py": "calls a cloud embedding provider (OpenAI)",
    "orm_deprecated/hybrid_search/hello_hybrid_sparse_dense.py": "needs pymilvus.model and downloads a model",
    "xgboost_function_chain.py": "needs xgboost, a MinIO server and a model upload",
    "external_collection_example.py": "reads an external table from object storage (S3/MinIO)",
    "orm_deprecated/bulk_import/data_gengerator.py": "a data generator, not an example",
    "orm_deprecated/resource_group_declarative_api.py": "loads 2+ replicas: "
    "walvus serves one replica of each collection",
}
# top-level examples/*.py, examples/orm_deprecated/**.py and examples/full_text_search/*.py
INCLUDED_DIRS = ("", "orm_deprecated/", "full_text_search/")


def extract(repo: Path, into: Path) -> Path:
    """`git archive HEAD examples` from the pymilvus clone, unpacked under `into`."""
    data = subprocess.run(
        ["git", "-C", str(repo), "archive", "HEAD", "examples"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "examples"


def discover(root: Path) -> tuple[list[str], dict[str, str]]:
    """The example names (paths under examples/) to run, and the skipped ones with their reason."""
    run: list[str] = []
    skipped: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        top = "/" not in name
        if not (top or any(d and name.startswith(d) for d in INCLUDED_DIRS)):
            continue
        reason = next((why for key, why in SKIPPED.items() if name == key or name.startswith(key)), None)
        if reason:
            skipped[name] = reason
        else:
            run.append(name)
    return run, skipped


def rewrite(source: str, port: int) -> str:
    """Point an example at the deployment: its port, host and the client's default address."""
    source = source.replace("19530", str(port)).replace("localhost", "127.0.0.1")
    return re.sub(r"MilvusClient\(\s*\)", f'MilvusClient("http://127.0.0.1:{port}")', source)


# Imported first by every example (it leads PYTHONPATH): pymilvus's default port, which
# `connections.connect(host=...)` fills in, becomes the deployment's.
SITECUSTOMIZE = """
import os
try:
    from pymilvus.settings import Config
except ImportError:
    pass
else:
    Config.DEFAULT_HOST = "127.0.0.1"
    Config.DEFAULT_PORT = os.environ["WALVUS_EXAMPLES_PORT"]
"""


def drop_everything(uri: str, token: str = "") -> None:
    """Every alias, collection, database, user, role and privilege group an example may have left."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri, token=token)
    try:
        for role in client.list_roles():
            if role not in ("admin", "public"):
                client.drop_role(role, force_drop=True)  # with its grants
        for user in client.list_users():
            if user != "root":
                client.drop_user(user)
        for group in client.list_privilege_groups():
            client.drop_privilege_group(group["privilege_group"])
        for db in reversed(client.list_databases()):  # `default` last: it stays
            client.use_database(db)
            for alias in client.list_aliases()["aliases"]:  # a collection with aliases cannot be dropped
                client.drop_alias(alias)
            for name in client.list_collections():
                client.drop_collection(name)
            if db != "default":
                client.drop_database(db)
    finally:
        client.close()


def last_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    details = [ln for ln in lines if ln.startswith("details = ")]
    if details and any("RpcError" in ln for ln in lines):  # a raw gRPC error spans lines
        return f"grpc: {details[-1]}"[:300]
    for ln in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Exit|Interrupt)\b", ln) or "Error" in ln.split(":")[0]:
            return ln[:300]
    return lines[-1][:300] if lines else ""


def gateway_errors(log: Path, start: int) -> list[str]:
    """Error lines (tracebacks, ERROR records) the gateway logged after byte `start`."""
    if not log.exists():
        return []
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return [
        ln[:300] for ln in text.splitlines() if "Traceback" in ln or " ERROR " in ln or "ERROR" in ln[:40]
    ]


def wait_port(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"the gateway did not open port {port} in {timeout}s")


def run_one(root: Path, name: str, port: int, timeout: float, extra_path: str = "") -> dict[str, Any]:
    path = root / name
    path.write_text(rewrite(path.read_text(), port))
    site = root.parent / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **os.environ,
        "MILVUS_URI": f"http://127.0.0.1:{port}",
        "WALVUS_EXAMPLES_PORT": str(port),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), extra_path, os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    }
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, path.name],
            cwd=path.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            start_new_session=True,
        )
        output = done.stdout.decode(errors="replace")
        result = "pass" if done.returncode == 0 else "fail"
        error = "" if done.returncode == 0 else last_error(output)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace")
        result, error = "fail", f"timed out after {timeout:.0f}s"
    return {
        "example": name,
        "result": result,
        "error": error,
        "seconds": round(time.monotonic() - started, 1),
        "output_tail": output[-4000:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=DEFAULT_REPO, help="a clone of github.com/milvus-io/pymilvus")
    ap.add_argument("--only", default="", help="comma-separated example names (paths under examples/)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per example")
    ap.add_argument(
        "--extra-path",
        default="",
        help="a folder of client-only packages some examples import (e.g. `pip install --target DIR ml_dtypes`)",
    )
    ap.add_argument(
        "--authorization",
        action="store_true",
        help="enable authorization (WALVUS_AUTHORIZATION_ENABLED; root's password stays Milvus)",
    )
    ap.add_argument(
        "--searchers",
        type=int,
        default=0,
        help="serve reads from N `walvus searcher` processes (WALVUS_SEARCHERS=remote); 0: inside the gateway",
    )
    args = ap.parse_args()
    env = {"WALVUS_SEAL_IDLE_SECONDS": "3"}
    procs: tuple[str, ...] = ("streams", "indexer", "gateway")
    if args.searchers:
        env["WALVUS_SEARCHERS"] = "remote"
        procs = ("streams", "indexer", *["searcher"] * args.searchers, "gateway")
    token = ""
    if args.authorization:
        env.update(WALVUS_AUTHORIZATION_ENABLED="true", WALVUS_ROOT_PASSWORD="Milvus")
        token = "root:Milvus"

    work = Path(tempfile.mkdtemp(prefix="pymilvus-examples-"))
    root = extract(Path(args.repo), work)
    names, skipped = discover(root)
    if args.only:
        # named examples run even when skipped by default or outside the usual folders
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        every = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))
        names = [n for n in every if wanted & {n, Path(n).name, Path(n).stem}]
        skipped = {}
    rows: list[dict[str, Any]] = []
    with local_deployment(procs, **env) as settings:
        port = int(settings["WALVUS_PORT"])
        uri = f"http://127.0.0.1:{port}"
        log = Path(settings["WALVUS_DATA_DIR"]).parent / "gateway.log"
        wait_port(port)
        for name in names:
            drop_everything(uri, token)
            start = log.stat().st_size if log.exists() else 0
            row = run_one(root, name, port, args.timeout, args.extra_path)
            row["gateway_errors"] = gateway_errors(log, start)
            rows.append(row)
            print(f"{row['result']:4} {row['seconds']:6.1f}s {name}  {row['error']}", flush=True)
        drop_everything(uri, token)
    rows += [{"example": n, "result": "skipped", "error": why} for n, why in skipped.items()]
    rows.sort(key=lambda r: r["example"])
    print_table(
        "pymilvus examples against walvus",
        ["example", "result", "last error / skip reason"],
        [[r["example"], r["result"], r["error"][:120]] for r in rows],
    )
    counts = {k: sum(r["result"] == k for r in rows) for k in ("pass", "fail", "skipped")}
    print(counts)
    RESULTS.mkdir(exist_ok=True)
    stem = "pymilvus_examples" + ("_only" if args.only else "") + ("_searchers" if args.searchers else "")
    out = RESULTS / f"{stem}.json"
    commit = subprocess.run(
        ["git", "-C", args.repo, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    out.write_text(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "pymilvus_commit": commit,
                "searchers": args.searchers,
                "counts": counts,
                "examples": rows,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
