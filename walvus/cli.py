"""The ``walvus`` command: one entry point, one subcommand per process or tool."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from walvus.once_log import quiet_repeats
from walvus.processes import die_with_parent, on_stop_signal, stop_processes
from walvus.settings import GatewaySettings, KafkaSettings, WalvusSettings

log = logging.getLogger("walvus")


def _bootstrap() -> str:
    ks = KafkaSettings()
    return ks.bootstrap_servers or f"127.0.0.1:{ks.kafka_port}"


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("aiokafka", "faust", "mode", "deltalake"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    quiet_repeats()  # a broker outage: one line per distinct error every 30 s, not hundreds a second


def cmd_kafka(args: argparse.Namespace) -> int:
    from walvus.kafka import LocalKafka

    ks = KafkaSettings()
    broker = LocalKafka(
        Path(args.data_dir or WalvusSettings().data_dir) / "kafka",
        port=ks.kafka_port,
        cache_dir=ks.kafka_cache_dir,
        die_with_launcher=True,
    )
    print(f"kafka: {broker.start()}", flush=True)
    _wait_for_signal()
    broker.stop()
    return 0


def cmd_streams(args: argparse.Namespace) -> int:
    from streams.app import run

    run(_bootstrap(), loglevel=args.log_level)
    return 0


def cmd_indexer(args: argparse.Namespace) -> int:
    from indexer.worker import run

    run(_bootstrap())
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    from gateway.server import run

    run(_bootstrap())
    return 0


def cmd_searcher(args: argparse.Namespace) -> int:
    from searcher.without_pandas import refuse_pandas

    refuse_pandas()  # before pyarrow loads: it would import pandas, which a searcher never uses
    from searcher.process import run

    run(_bootstrap())
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Start everything on this machine: Kafka (unless one is given), streams, indexer, gateway."""
    from walvus.kafka import LocalKafka

    base = WalvusSettings()
    ks = KafkaSettings()
    data_dir = Path(args.data_dir or base.data_dir).resolve()
    env = {**os.environ, "WALVUS_DATA_DIR": str(data_dir)}
    broker = None
    if ks.bootstrap_servers is None:
        # the broker runs in its own session (Ctrl-C reaches only us, and we stop it cleanly), but
        # dies with us, even by kill -9; a later start also stops one left behind by an older walvus
        broker = LocalKafka(
            data_dir / "kafka", port=ks.kafka_port, cache_dir=ks.kafka_cache_dir, die_with_launcher=True
        )
        bootstrap = broker.start()
    else:
        bootstrap = ks.bootstrap_servers
    env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    procs: dict[str, subprocess.Popen[bytes]] = {}
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    gw = GatewaySettings()
    # name -> command: with WALVUS_SEARCHERS=remote, searcher processes serve the reads
    commands = {"streams": "streams", "indexer": "indexer"}
    if gw.searchers == "remote":
        commands.update({f"searcher-{i + 1}": "searcher" for i in range(gw.searcher_processes)})
    commands["gateway"] = "gateway"

    def spawn(name: str) -> subprocess.Popen[bytes]:
        out = open(data_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, "-m", "walvus", commands[name]],
            env=env,
            stdout=out,
            stderr=out,
            preexec_fn=die_with_parent(),
        )

    for name in commands:
        procs[name] = spawn(name)
    print(f"walvus is up. data: {data_dir}", flush=True)
    print(f"  kafka    {bootstrap}{' (local)' if broker else ''}", flush=True)
    for name, p in procs.items():
        print(f"  {name:<8} pid {p.pid}, log {data_dir / 'logs' / (name + '.log')}", flush=True)
    print(f'connect with: MilvusClient("http://{gw.host}:{gw.port}")', flush=True)
    if gw.rest_port:
        print(f"REST API (Milvus v2): http://{gw.host}:{gw.rest_port}/v2/vectordb/...", flush=True)
    try:
        while True:
            if broker is not None and not broker.is_running and not _STOPPING.is_set():
                _restart_broker(broker)
            for name, p in procs.items():
                if p.poll() is not None:
                    log.warning("process exited name=%s rc=%s; restarting", name, p.returncode)
                    procs[name] = spawn(name)
            if _STOPPING.wait(0.5):
                break
    finally:
        stop_processes(procs.values())
        if broker is not None:
            broker.stop()
    return 0


_STOPPING = threading.Event()  # set on SIGTERM/SIGINT (through on_stop_signal)


def _restart_broker(broker: object) -> None:
    """The local broker died (kill -9, out of memory): start it again on the same data dir and port.
    Workers and clients reconnect by themselves; what the broker acknowledged is in its log."""
    from walvus.kafka import KafkaLauncherError, LocalKafka

    assert isinstance(broker, LocalKafka)
    rc = broker.kill()  # reaps it and clears its pid file
    log.warning("kafka exited rc=%s; restarting bootstrap=%s", rc, broker.bootstrap)
    try:
        broker.start()
    except KafkaLauncherError as exc:  # tried again on the next turn of the loop
        log.error("kafka restart failed, retrying error=%s", exc)
        _STOPPING.wait(2.0)


def _wait_for_signal() -> None:
    on_stop_signal(_STOPPING.set)
    _STOPPING.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="walvus", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("WALVUS_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "up", help="start Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set) and every walvus process"
    )
    p.add_argument("--data-dir")
    p.set_defaults(fn=cmd_up)
    p = sub.add_parser("kafka", help="run a local single-node Kafka broker in the foreground")
    p.add_argument("--data-dir")
    p.set_defaults(fn=cmd_kafka)
    sub.add_parser("streams", help="run the streams worker (WAL -> Delta, ingest -> WAL)").set_defaults(
        fn=cmd_streams
    )
    sub.add_parser("indexer", help="run the index builder").set_defaults(fn=cmd_indexer)
    sub.add_parser(
        "searcher", help="run a searcher that serves the shards its consumer group assigns it"
    ).set_defaults(fn=cmd_searcher)
    sub.add_parser("gateway", help="run the Milvus-compatible gRPC server with its searcher").set_defaults(
        fn=cmd_gateway
    )
    from walvus.inspect import add_parser as add_inspect

    add_inspect(sub)
    try:
        from cdc.cli import add_parser as add_cdc

        add_cdc(sub)
    except ImportError:
        pass
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    if args.command == "up":
        on_stop_signal(_STOPPING.set)
    return int(args.fn(args) or 0)
