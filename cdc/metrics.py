"""Prometheus metrics of the CDC service, computed from the tasks' state at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from cdc.service import CdcService

PAUSED_LAG_MAX_AGE = 5.0  # seconds: a paused task's lag is measured at most this often

log = logging.getLogger(__name__)
_STATES = ("starting", "running", "retrying", "failed", "stopped", "paused")


class CdcCollector:
    """``walvus_cdc_*``: lag per task and shard, records, transactions and state per task."""

    def __init__(self, service: CdcService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        lag_records = GaugeMetricFamily(
            "walvus_cdc_lag_records",
            "Source records not yet replicated",
            labels=["task", "topic", "partition"],
        )
        lag_seconds = GaugeMetricFamily(
            "walvus_cdc_lag_seconds",
            "Age of the oldest source record not yet replicated (0 when caught up)",
            labels=["task", "topic", "partition"],
        )
        state = GaugeMetricFamily(
            "walvus_cdc_task_state", "1 for the task's current state", labels=["task", "state"]
        )
        replicated = CounterMetricFamily(
            "walvus_cdc_replicated_records", "Records committed to the target", labels=["task"]
        )
        replicated_bytes = CounterMetricFamily(
            "walvus_cdc_replicated_bytes", "Bytes committed to the target", labels=["task"]
        )
        skipped = CounterMetricFamily(
            "walvus_cdc_skipped_records",
            "Source records not sent (origin: loop prevention)",
            labels=["task", "reason"],
        )
        txns = CounterMetricFamily(
            "walvus_cdc_transactions", "Target transactions committed", labels=["task"]
        )
        aborted = CounterMetricFamily(
            "walvus_cdc_aborted_transactions", "Target transactions aborted", labels=["task"]
        )
        sessions = CounterMetricFamily(
            "walvus_cdc_sessions", "Replicator sessions started (restarts + 1)", labels=["task"]
        )
        running = self.service.replicators()
        for task in self.service.store.all():
            rep = running.get(task.task_id)
            current = rep.stats.state if rep is not None else task.state
            for s in _STATES:
                state.add_metric([task.name, s], 1.0 if s == current else 0.0)
            try:
                shards = self.service.lag(task, max_age=PAUSED_LAG_MAX_AGE)[0]
            except Exception as exc:  # a scrape must not fail because one cluster is down
                log.warning("lag unavailable task=%s error=%s", task.name, exc)
                shards = []
            for sh in shards:
                labels = [task.name, sh.topic, str(sh.partition)]
                lag_records.add_metric(labels, float(sh.records))
                if sh.seconds is not None:
                    lag_seconds.add_metric(labels, sh.seconds)
            if rep is None:
                continue
            st = rep.stats
            replicated.add_metric([task.name], float(st.replicated))
            replicated_bytes.add_metric([task.name], float(st.replicated_bytes))
            for reason, n in st.skipped.items():
                skipped.add_metric([task.name, reason], float(n))
            txns.add_metric([task.name], float(st.transactions))
            aborted.add_metric([task.name], float(st.aborted))
            sessions.add_metric([task.name], float(st.sessions))
        yield from (
            lag_records,
            lag_seconds,
            state,
            replicated,
            replicated_bytes,
            skipped,
            txns,
            aborted,
            sessions,
        )


def registry_for(service: CdcService) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CdcCollector(service))
    return registry
