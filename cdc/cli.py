"""``walvus cdc ...``: run the CDC service, and manage its tasks through the task API.

    walvus cdc serve                              # task API + every task of the store
    walvus cdc create a-to-b --source 10.0.0.1:9092 --target 10.1.0.1:9092 \
        --collections docs,news --map docs:docs_copy --start earliest
    walvus cdc list | get NAME | positions NAME | pause NAME | resume NAME | delete NAME
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from cdc.client import ApiError, CdcClient
from cdc.settings import CdcSettings
from walvus.processes import on_stop_signal

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("cdc", help="replicate collections to another site (task API, replicator)")
    p.add_argument(
        "--url", help="task API of `walvus cdc serve` (default: WALVUS_CDC_URL or http://host:port)"
    )
    sub = p.add_subparsers(dest="cdc_command", required=True)
    s = sub.add_parser("serve", help="run the task API, the metrics endpoint and every running task")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--task-file", type=Path, help="task store (default: data_dir/cdc/tasks.json)")
    s.add_argument("--metrics-port", type=int, help="an extra Prometheus-only port")
    s.set_defaults(fn=cmd_serve)
    c = sub.add_parser("create", help="create a task and start it")
    c.add_argument("name")
    c.add_argument("--source", required=True, help="source Kafka bootstrap host:port")
    c.add_argument("--target", required=True, help="target Kafka bootstrap host:port")
    c.add_argument("--source-namespace", help="walvus namespace on the source (default walvus)")
    c.add_argument("--target-namespace", help="walvus namespace on the target (default: the source's)")
    c.add_argument("--source-site", help="WALVUS_SITE of the source deployment (default: its namespace)")
    c.add_argument("--target-site", help="WALVUS_SITE of the target deployment (default: its namespace)")
    for role in ("source", "target"):
        c.add_argument(f"--{role}-username", help=f"SASL/PLAIN user of the {role} cluster")
        c.add_argument(
            f"--{role}-password",
            help=f"SASL/PLAIN password (or WALVUS_CDC_{role.upper()}_PASSWORD in the environment)",
        )
        c.add_argument(
            f"--{role}-security-protocol", help="SASL_PLAINTEXT (default with a user), SASL_SSL..."
        )
    c.add_argument("--collections", help="comma-separated source collections (default: all, and later ones)")
    c.add_argument(
        "--map", action="append", default=[], help="source:target name mapping (repeat or a,b list)"
    )
    c.add_argument("--start", default="earliest", help="earliest | latest | saved positions: a JSON or @file")
    c.add_argument(
        "--rbac", action="store_true", help="also replicate users, roles, grants and privilege groups"
    )
    c.set_defaults(fn=cmd_create)
    sub.add_parser("list", help="list tasks with state and lag").set_defaults(fn=cmd_list)
    for name, what in (
        ("get", "a task with per-shard lag and positions"),
        ("positions", "the source positions the target has committed (a saved start)"),
        ("pause", "pause a task"),
        ("resume", "resume a paused task"),
        ("delete", "delete a task"),
    ):
        q = sub.add_parser(name, help=what)
        q.add_argument("task", help="task name or id")
        q.set_defaults(fn=cmd_task, action=name)


def _client(args: argparse.Namespace) -> CdcClient:
    return CdcClient(args.url or CdcSettings().url)


def _endpoint(args: argparse.Namespace, role: str) -> dict[str, Any]:
    ep: dict[str, Any] = {"bootstrap": getattr(args, role)}
    for key in ("namespace", "site", "username", "security_protocol"):
        value = getattr(args, f"{role}_{key}")
        if value:
            ep[key] = value
    password = getattr(args, f"{role}_password") or os.environ.get(f"WALVUS_CDC_{role.upper()}_PASSWORD")
    if password:
        ep["password"] = password
    return ep


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON body of ``POST /tasks`` from the command line; checked again by the server."""
    body: dict[str, Any] = {
        "name": args.name,
        "source": _endpoint(args, "source"),
        "target": _endpoint(args, "target"),
    }
    if args.collections:
        body["collections"] = [c.strip() for c in args.collections.split(",") if c.strip()]
    mapping: dict[str, str] = {}
    for item in ",".join(args.map).split(","):
        if not item.strip():
            continue
        src, sep, dst = item.partition(":")
        if not sep or not src.strip() or not dst.strip():
            raise SystemExit(f"walvus cdc: --map takes source:target, got {item!r}")
        mapping[src.strip()] = dst.strip()
    if mapping:
        body["map"] = mapping
    if getattr(args, "rbac", False):
        body["rbac"] = True
    start = args.start
    if start not in ("earliest", "latest"):
        text = Path(start[1:]).read_text() if start.startswith("@") else start
        try:
            body["start"] = json.loads(text)
        except ValueError as exc:
            raise SystemExit(
                f"walvus cdc: --start is not earliest, latest or positions JSON: {exc}"
            ) from None
    else:
        body["start"] = start
    return body


def cmd_create(args: argparse.Namespace) -> int:
    return _print(lambda: _client(args).create(build_request(args)))


def cmd_task(args: argparse.Namespace) -> int:
    client = _client(args)
    return _print(lambda: getattr(client, args.action)(args.task))


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    try:
        tasks = _client(args).list()
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    table = Table("name", "id", "state", "source", "target", "collections", "lag records", "lag s")
    for t in tasks:
        lag = t.get("lag") or {}
        table.add_row(
            t["name"],
            t["id"],
            t["status"]["state"],
            f"{t['source']['bootstrap']}/{t['source']['namespace']}",
            f"{t['target']['bootstrap']}/{t['target']['namespace']}",
            ",".join(t["collections"]) if t["collections"] else "*",
            str(lag.get("records", "")),
            f"{lag['seconds']:.1f}" if lag.get("seconds") is not None else "",
        )
    Console().print(table)
    return 0


def _print(call: Any) -> int:
    try:
        print(json.dumps(call(), indent=2))
    except ApiError as exc:
        print(f"error ({exc.type}): {exc.message}", file=sys.stderr)
        return 2 if 400 <= exc.status < 500 else 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from cdc.api import ApiServer
    from cdc.metrics import registry_for
    from cdc.service import CdcService
    from cdc.store import TaskStore

    settings = CdcSettings()
    store = TaskStore(args.task_file or settings.task_file).open()
    service = CdcService(store, settings)
    server = ApiServer(service, args.host or settings.cdc_host, args.port or settings.cdc_port).start()
    metrics_port = args.metrics_port or settings.cdc_metrics_port
    if metrics_port:
        start_http_server(metrics_port, addr=args.host or settings.cdc_host, registry=registry_for(service))
    service.start()
    print(f"cdc api: {server.url}", flush=True)
    stop = threading.Event()
    on_stop_signal(stop.set)
    stop.wait()
    log.info("cdc stopping")
    service.close()
    server.stop()
    store.close()
    return 0
