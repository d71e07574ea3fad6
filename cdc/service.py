"""The task service: create, list, get, pause, resume and delete tasks; runs their replicators.

A create request is checked completely before anything is stored or started: the request's
shape, both clusters' reachability, the collections on the source, name clashes on the target,
and the start position (``latest`` is turned into concrete source offsets right away, so a
restart before the first commit cannot skip anything).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from cdc import lag as lag_mod
from cdc import positions as positions_mod
from cdc.clusters import check_reachable, drop_topic, read_catalog, reader, release_hold
from cdc.exceptions import InvalidTask, TaskExists, UnknownCollection
from cdc.lag import LagProbe, ShardLag
from cdc.replicator import Replicator
from cdc.settings import CdcSettings
from cdc.spec import PAUSED, RUNNING, Positions, TaskSpec, positions_to_json
from cdc.store import TaskStore
from schemas.topics import catalog_topic, wal_prefix, wal_topic

log = logging.getLogger(__name__)


class CdcService:
    def __init__(self, store: TaskStore, settings: CdcSettings | None = None) -> None:
        self.store = store
        self.settings = settings or CdcSettings()
        self._running: dict[str, Replicator] = {}
        self._paused_lag: dict[str, tuple[float, list[ShardLag], Positions]] = {}
        self._lock = threading.RLock()

    def start(self) -> CdcService:
        for task in self.store.all():
            if task.state == RUNNING:
                self._start(task)
        return self

    def close(self) -> None:
        with self._lock:
            reps = list(self._running.values())
            self._running.clear()
        for rep in reps:
            rep.stop()

    def _start(self, task: TaskSpec) -> None:
        with self._lock:
            if task.task_id not in self._running:
                self._running[task.task_id] = Replicator(task, self.settings).start()
                log.info("task started task=%s id=%s", task.name, task.task_id)

    def _stop(self, task_id: str) -> None:
        with self._lock:
            rep = self._running.pop(task_id, None)
        if rep is not None:
            rep.stop()

    # the API ---------------------------------------------------------------------------------
    def create(self, raw: Any) -> dict[str, Any]:
        spec = TaskSpec.parse(raw)
        if any(t.name == spec.name for t in self.store.all()):
            raise TaskExists(spec.name)
        spec = self._validate(spec).created()
        self.store.add(spec)
        self._start(spec)
        log.info("task created task=%s id=%s start=%s", spec.name, spec.task_id, spec.start)
        return self.describe(spec.name)

    def list(self) -> list[dict[str, Any]]:
        return [self._summary(t) for t in self.store.all()]

    def describe(self, ref: str) -> dict[str, Any]:
        task = self.store.get(ref)
        shards, pos, measured = self.lag(task)
        out = self._summary(task, shards, measured)
        out["positions"] = positions_to_json(pos)
        out["lag_by_shard"] = [s.to_dict() for s in shards]
        return out

    def pause(self, ref: str) -> dict[str, Any]:
        task = self.store.get(ref)
        self._stop(task.task_id)  # commits the open transaction first
        self.store.put(task.with_state(PAUSED))
        log.info("task paused task=%s", task.name)
        return self.describe(task.task_id)

    def resume(self, ref: str) -> dict[str, Any]:
        task = self.store.get(ref)
        task = task.with_state(RUNNING)
        self.store.put(task)
        self._paused_lag.pop(task.task_id, None)
        self._start(task)
        log.info("task resumed task=%s", task.name)
        return self.describe(task.task_id)

    def delete(self, ref: str) -> dict[str, Any]:
        task = self.store.get(ref)
        self._stop(task.task_id)
        self.store.remove(task.task_id)
        self._paused_lag.pop(task.task_id, None)
        drop_topic(task.target, positions_mod.positions_topic(task.target.namespace, task.task_id))
        release_hold(task)
        log.info("task deleted task=%s id=%s", task.name, task.task_id)
        return {"deleted": task.task_id, "name": task.name}

    def positions(self, ref: str) -> dict[str, Any]:
        """The source positions the target has committed: readable with the source gone."""
        task = self.store.get(ref)
        rep = self._running.get(task.task_id)
        return {"positions": positions_to_json(rep.positions() if rep is not None else self._committed(task))}

    # lag -------------------------------------------------------------------------------------
    def lag(self, task: TaskSpec, max_age: float = 0.0) -> tuple[list[ShardLag], Positions, float]:
        """Per-shard lag, positions and when the lag was measured (0: not yet, or not possible).

        A running task reports its own measurement; a paused one is measured here, unless a
        measurement younger than ``max_age`` seconds is at hand (metrics scrapes).
        """
        rep = self._running.get(task.task_id)
        if rep is not None:
            return list(rep.stats.lag), rep.positions(), rep.stats.lag_at
        cached = self._paused_lag.get(task.task_id)
        if cached is not None and time.time() - cached[0] < max_age:
            return cached[1], cached[2], cached[0]
        tracked = self._committed(task)
        try:
            probe = LagProbe(task.source)
            try:
                shards = probe.measure(tracked)
            finally:
                probe.close()
        except Exception as exc:  # the source may be the site that was lost: positions still count
            log.warning("cannot measure lag task=%s error=%s", task.name, exc)
            return [], tracked, 0.0
        now = time.time()
        self._paused_lag[task.task_id] = (now, shards, tracked)
        return shards, tracked, now

    def _committed(self, task: TaskSpec) -> Positions:
        """Start positions overlaid with what the target has committed (read from the target)."""
        tracked = {t: dict(p) for t, p in task.start_positions.items()}
        for topic, parts in positions_mod.load(task.target, task.task_id, timeout=10).items():
            tracked.setdefault(topic, {}).update(parts)
        return tracked

    def replicators(self) -> dict[str, Replicator]:
        with self._lock:
            return dict(self._running)

    def _summary(
        self, task: TaskSpec, shards: list[ShardLag] | None = None, measured: float | None = None
    ) -> dict[str, Any]:
        rep = self._running.get(task.task_id)
        out = task.to_dict()
        if rep is not None:
            st = rep.stats
            out["status"] = {
                "state": st.state,
                "error": st.error,
                "replicated_records": st.replicated,
                "replicated_bytes": st.replicated_bytes,
                "skipped_records": dict(st.skipped),
                "transactions": st.transactions,
                "aborted_transactions": st.aborted,
                "sessions": st.sessions,
            }
            if shards is None:
                shards, measured = st.lag, st.lag_at
        else:
            out["status"] = {"state": task.state}
        out["lag"] = (
            None if shards is None or not measured else {**lag_mod.summary(shards), "measured_at": measured}
        )
        return out

    # validation ------------------------------------------------------------------------------
    def _validate(self, spec: TaskSpec) -> TaskSpec:
        timeout = self.settings.cdc_connect_timeout_seconds
        src_meta = check_reachable("source", spec.source, timeout)
        check_reachable("target", spec.target, timeout)
        src_catalog = catalog_topic(spec.source.namespace)
        if src_catalog not in src_meta.topics:
            raise InvalidTask(
                f"the source has no walvus catalog topic {src_catalog}: is source.namespace right?",
                topic=src_catalog,
            )
        source = {
            n: d for n, (_, d) in read_catalog(spec.source, src_catalog).items() if d.get("state") == "active"
        }
        if spec.collections is not None:
            missing = [c for c in spec.collections if c not in source]
            if missing:
                raise UnknownCollection(missing, spec.source.bootstrap)
        wanted = {n: d for n, d in source.items() if spec.wants(n)}
        self._check_target_names(spec, wanted)
        if spec.start == "latest":
            return _with_latest(spec, wanted)
        if spec.start == "saved":
            prefix = wal_prefix(spec.source.namespace)
            bad = [t for t in spec.start_positions if t != src_catalog and not t.startswith(prefix)]
            if bad:
                raise InvalidTask(
                    f"saved positions name topics outside the source namespace: {', '.join(bad)}"
                )
        return spec

    def _check_target_names(self, spec: TaskSpec, wanted: dict[str, dict]) -> None:
        topic = catalog_topic(spec.target.namespace)
        target = {
            n: d for n, (_, d) in read_catalog(spec.target, topic).items() if d.get("state") == "active"
        }
        for name, d in wanted.items():
            there = target.get(spec.target_name(name))
            if there is not None and int(there["collection_id"]) != int(d["collection_id"]):
                raise InvalidTask(
                    f"the target already has a different collection named {spec.target_name(name)!r} "
                    f"(id {there['collection_id']}, source id {d['collection_id']}): map it to another name",
                    collection=name,
                )


def _with_latest(spec: TaskSpec, wanted: dict[str, dict]) -> TaskSpec:
    """Start positions for ``latest``: each followed WAL partition's end offset, now."""
    tail = reader(spec.source)
    try:
        positions: Positions = {}
        for d in wanted.values():
            topic = wal_topic(spec.source.namespace, int(d["collection_id"]))
            for p in range(int(d.get("shards_num", 1))):
                marks = tail.watermarks_if_exists(topic, p)
                positions.setdefault(topic, {})[p] = marks[1] if marks else 0
    finally:
        tail.close()
    return replace(spec, start_positions=positions)
