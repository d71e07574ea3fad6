"""``walvus searcher``: a process that serves search and query for the shards its group assigns it.

It follows the catalog, joins its replica group's consumer group on the WAL topics of the loaded
collections (``searcher.ownership``), loads only the sealed segments of the shards it is given,
tails only their WAL partitions, and answers gateways over Arrow Flight (``searcher.flight``).
SIGTERM leaves the group first, so the shards move to the other searchers at once.
"""

from __future__ import annotations

import logging
import os
import threading

from schemas.topics import presence_topic, searcher_group
from searcher.flight import SearcherFlight, serve
from searcher.ownership import ShardOwnership
from searcher.service import SearcherService
from walvus.processes import on_stop_signal
from walvus.settings import SearcherSettings

log = logging.getLogger(__name__)


SHUTDOWN_SECONDS = 10.0  # gateways close idle streams within a few seconds


def _shutdown(server: SearcherFlight, timeout: float) -> bool:
    """Flight's shutdown waits for every open call; True when they all ended within ``timeout``."""
    done = threading.Thread(target=server.shutdown, name="flight-shutdown", daemon=True)
    done.start()
    done.join(timeout)
    return not done.is_alive()


def _serve_metrics(settings: SearcherSettings) -> None:
    """Prometheus /metrics (index attach failures, applied WAL offsets), when a port is set."""
    if not settings.searcher_metrics_port:
        return
    from prometheus_client import start_http_server

    try:
        start_http_server(settings.searcher_metrics_port, addr=settings.searcher_metrics_host)
    except OSError as exc:  # metrics are not worth refusing to serve reads
        log.error("searcher metrics disabled port=%s error=%s", settings.searcher_metrics_port, exc)


def run(bootstrap: str) -> None:
    from walvus.api import Walvus

    settings = SearcherSettings()
    walvus = Walvus.connect(bootstrap)
    svc = SearcherService(walvus.kafka, walvus.catalog, walvus.store, walvus.ns, settings)
    # a client's writes went through a gateway, which sends their positions with each Session or
    # Bounded read (``Consistency.wait_for``)
    server = serve(svc, settings.searcher_host, settings.searcher_port)
    address = f"{settings.searcher_advertised_host or settings.searcher_host}:{server.port}"
    group = searcher_group(walvus.ns, settings.searcher_replica_group)
    presence = presence_topic(walvus.ns)
    walvus.kafka.ensure_topic(presence, 1)
    ownership = ShardOwnership(
        walvus.kafka.conf,
        group,
        address,
        svc.on_assignment,
        settings.searcher_session_timeout_ms,
        presence_topic=presence,
    )
    svc.hold_assigned(ownership, settings.searcher_replica_group)
    _serve_metrics(settings)
    ownership.start()
    print(f"walvus searcher serving on {address} group={group}", flush=True)
    log.info("searcher serving address=%s group=%s", address, group)
    stop = threading.Event()
    on_stop_signal(stop.set)
    try:
        stop.wait()
    finally:
        log.info("searcher stopping address=%s", address)
        ownership.stop()
        stopped = _shutdown(server, timeout=SHUTDOWN_SECONDS)
        svc.close()
        walvus.close()
        if not stopped:  # a gateway kept a stream open: exit anyway (its reads go to another searcher)
            log.warning("searcher stopped with reads still open address=%s", address)
            logging.shutdown()
            os._exit(0)


__all__ = ["run"]
