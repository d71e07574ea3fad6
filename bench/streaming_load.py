"""The moving parts of ``bench.streaming``: search client processes, the stream producer, the
freshness probe, and the monitor of growing rows and server memory.

Every timestamp is ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on the
machine), so the send times that client processes report line up with the ack times that the
producer and the probe record in the benchmark's process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.peers import COLLECTION, TOP_K, PymilvusPeer

MB = 1024 * 1024
FRESH_ID = 1_000_000_000  # ids of freshness rows: far above the base and streamed ids


# acknowledged rows --------------------------------------------------------------------------
class AckLog:
    """Every row a server acknowledged: (ack time, ids, vectors), appended by several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches: list[tuple[float, np.ndarray, np.ndarray]] = []
        self.count = 0

    def add(self, acked: float, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            self.batches.append((acked, ids, vectors))
            self.count += len(ids)

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ack time per row, ids, vectors), ordered by ack time."""
        with self._lock:
            batches = sorted(self.batches, key=lambda b: b[0])
        if not batches:
            return np.empty(0), np.empty(0, np.int64), np.empty((0, 0), np.float32)
        times = np.concatenate([np.full(len(b[1]), b[0]) for b in batches])
        return times, np.concatenate([b[1] for b in batches]), np.concatenate([b[2] for b in batches])


# the stream -----------------------------------------------------------------------------------
class StreamProducer(threading.Thread):
    """Inserts ``batch``-row writes on a fixed schedule at ``rate`` rows/s (0: paused).

    A write that returns late does not make the next ones burst: the schedule never runs more
    than one second behind, and the rows it skipped are counted in ``skipped_rows``.
    """

    def __init__(
        self,
        peer: PymilvusPeer,
        first_id: int,
        sample: Callable[[int], np.ndarray],
        log: AckLog,
        batch: int = 100,
    ) -> None:
        super().__init__(name="stream-producer", daemon=True)
        self.peer, self.next_id, self.sample, self.log, self.batch = peer, first_id, sample, log, batch
        self.rate = 0.0
        self.stopped = threading.Event()
        self.acks: list[tuple[float, float, int]] = []  # (sent, acked, rows)
        self.errors: list[str] = []
        self.skipped_rows = 0

    def run(self) -> None:
        due = time.monotonic()
        while not self.stopped.is_set():
            rate = self.rate
            now = time.monotonic()
            if rate <= 0:
                due = now
                self.stopped.wait(0.05)
                continue
            if now < due:
                self.stopped.wait(due - now)
                continue
            if now - due > 1.0:
                self.skipped_rows += int((now - due) * rate)
                due = now
            ids = np.arange(self.next_id, self.next_id + self.batch, dtype=np.int64)
            vectors = self.sample(self.batch)
            sent = time.monotonic()
            try:
                self.peer.insert(ids, vectors)
            except Exception as exc:
                self.errors.append(repr(exc))
            else:
                acked = time.monotonic()
                self.log.add(acked, ids, vectors)
                self.acks.append((sent, acked, self.batch))
                self.next_id += self.batch
            due += self.batch / rate

    def stop(self) -> None:
        self.stopped.set()
        self.join(60)


class FreshnessProbe(threading.Thread):
    """Every ``interval`` s: insert one marked row, then Strong-search its vector until it is returned."""

    def __init__(
        self,
        peer: PymilvusPeer,
        sample: Callable[[int], np.ndarray],
        log: AckLog,
        interval: float = 1.0,
        cap: float = 5.0,
    ) -> None:
        super().__init__(name="freshness-probe", daemon=True)
        self.peer, self.sample, self.log, self.interval, self.cap = peer, sample, log, interval, cap
        self.stopped = threading.Event()
        self.trials: list[dict[str, Any]] = []  # sent, acked, visible (None: not within cap), searches
        self.errors: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stopped.is_set():
            began = time.monotonic()
            vid, vector = FRESH_ID + n, self.sample(1)
            n += 1
            try:
                self.peer.insert(np.array([vid], np.int64), vector)
            except Exception as exc:
                self.errors.append(f"insert: {exc!r}")
                self.stopped.wait(self.interval)
                continue
            acked = time.monotonic()
            self.log.add(acked, np.array([vid], np.int64), vector)
            trial: dict[str, Any] = {"sent": began, "acked": acked, "visible": None, "searches": 0}
            query = vector.tolist()
            while not self.stopped.is_set() and time.monotonic() - acked < self.cap:
                trial["searches"] += 1
                try:
                    found = self.peer.search(query, 1, "Strong")
                except Exception as exc:
                    self.errors.append(f"search: {exc!r}")
                    self.stopped.wait(0.05)
                    continue
                if found and vid in found[0]:
                    trial["visible"] = time.monotonic()
                    break
            if trial["visible"] is not None or not self.stopped.is_set():
                self.trials.append(trial)
            self.stopped.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self) -> None:
        self.stopped.set()
        self.join(self.cap + 60)


# growing rows and memory ----------------------------------------------------------------------
def growing_rows(peer: PymilvusPeer, walvus: bool, acked: Callable[[], int]) -> int | None:
    """Rows in growing segments. walvus: its ``growing_rows`` statistic. Milvus 2.3.5 lists only
    sealed segments in GetQuerySegmentInfo (``list_loaded_segments``), so there it is ``acked()``
    (every acknowledged row) minus the rows of the loaded sealed segments: the rows the query
    node can only serve from growing data."""
    if walvus:
        value = peer.client.get_collection_stats(COLLECTION).get("growing_rows")
        return None if value is None else int(value)
    segments = peer.client.list_loaded_segments(COLLECTION)
    sealed = sum(s.num_rows for s in segments if "growing" not in str(getattr(s, "state", "")).lower())
    return max(0, acked() - sealed)


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, command line, RSS bytes) for every readable process."""
    out: dict[int, tuple[int, str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            rss = 0
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        out[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd, rss)
    return out


def _label(cmd: str) -> str:
    words = cmd.split()
    for i, word in enumerate(words[:-1]):
        if word == "-m" and words[i + 1] == "walvus":
            return words[i + 2] if i + 2 < len(words) else "walvus"
    if "kafka" in cmd.lower():
        return "broker"
    return Path(words[0]).name if words else "?"


def server_rss(exclude: set[int]) -> dict[str, int]:
    """RSS bytes by process label, over every process under this one except ``exclude``'s subtrees
    (the benchmark's client processes) and multiprocessing helpers."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[str, int] = {}
    todo = list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        if pid in exclude or pid not in table or "multiprocessing" in table[pid][1]:
            continue
        label = _label(table[pid][1])
        out[label] = out.get(label, 0) + table[pid][2]
        todo += children.get(pid, [])
    return out


class Monitor(threading.Thread):
    """Samples growing rows and server RSS about once per ``interval`` s."""

    def __init__(self, growing: Callable[[], int | None], exclude: set[int], interval: float = 1.0) -> None:
        super().__init__(name="monitor", daemon=True)
        self.growing, self.exclude, self.interval = growing, exclude, interval
        self.stopped = threading.Event()
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def sample(self) -> dict[str, Any]:
        t = time.monotonic()
        try:
            growing = self.growing()
        except Exception as exc:
            self.errors.append(repr(exc))
            growing = None
        rss = server_rss(self.exclude)
        row = {"t": t, "growing_rows": growing, "rss": rss, "rss_total": sum(rss.values())}
        self.samples.append(row)
        return row

    def run(self) -> None:
        while not self.stopped.is_set():
            began = time.monotonic()
            self.sample()
            self.stopped.wait(max(0.05, self.interval - (time.monotonic() - began)))

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)


# search clients ---------------------------------------------------------------------------------
@dataclass
class ClientRun:
    """What one phase's client processes did: one row per search, in send-time order."""

    start: float
    seconds: float
    sent: np.ndarray  # monotonic send time
    latency: np.ndarray  # seconds; NaN for a failed search
    query: np.ndarray  # index into the query set
    consistency: np.ndarray  # index into the phase's schedule
    ids: np.ndarray  # (n, TOP_K) returned ids, -1 padded
    errors: int = 0
    first_error: str | None = None
    pids: list[int] = field(default_factory=list)


def run_clients(
    uri: str,
    queries: list,
    clients: int,
    schedule: list[tuple[float, str]],
    seconds: float,
    on_start: Callable[[set[int]], None],
    wait: Callable[[float, float], None],
) -> ClientRun:
    """``clients`` processes, each its own pymilvus client, searching nq=1 top-10 for ``seconds``.

    ``schedule`` is [(offset s, consistency)]: from each offset on, searches use that level.
    ``on_start(pids)`` runs once the processes exist; ``wait(start, seconds)`` while they search.
    """
    ctx = mp.get_context("spawn")  # a fresh interpreter: no gRPC state crosses a fork
    ready, results = ctx.Queue(), ctx.Queue()
    go, start = ctx.Event(), ctx.Value("d", 0.0)
    pool = [
        ctx.Process(
            target=_client_process,
            args=(uri, queries, schedule, seconds, 2000 + i, ready, go, start, results),
            daemon=True,
        )
        for i in range(clients)
    ]
    for p in pool:
        p.start()
    on_start({p.pid for p in pool if p.pid})
    for _ in pool:
        ready.get(timeout=300)
    start.value = time.monotonic() + 0.2
    go.set()
    wait(start.value, seconds)
    got = [results.get(timeout=seconds + 300) for _ in pool]
    for p in pool:
        p.join(30)
    order = np.argsort(np.concatenate([g["sent"] for g in got]), kind="stable")
    cat = {
        k: np.concatenate([g[k] for g in got])[order]
        for k in ("sent", "latency", "query", "consistency", "ids")
    }
    errors = [g["first_error"] for g in got if g["first_error"]]
    return ClientRun(
        start=start.value,
        seconds=seconds,
        errors=sum(g["errors"] for g in got),
        first_error=errors[0] if errors else None,
        pids=[p.pid for p in pool if p.pid],
        **cat,
    )


def _client_process(
    uri: str,
    queries: list,
    schedule: list[tuple[float, str]],
    seconds: float,
    seed: int,
    ready: Any,
    go: Any,
    start: Any,
    results: Any,
) -> None:
    from pymilvus import MilvusClient

    peer = PymilvusPeer(MilvusClient(uri, dedicated=True))
    rng = np.random.default_rng(seed)
    for w in range(3):  # warm-up: connections, caches
        try:
            peer.search(queries[w : w + 1], 1, schedule[0][1])
        except Exception:
            pass
    ready.put(seed)
    go.wait()
    t0 = start.value
    end = t0 + seconds
    time.sleep(max(0.0, t0 - time.monotonic()))
    offsets = [o for o, _ in schedule]
    sent, lat, qs, cons, ids = [], [], [], [], []
    errors, first_error = 0, None
    while (now := time.monotonic()) < end:
        level = int(np.searchsorted(offsets, now - t0, side="right")) - 1
        q = int(rng.integers(len(queries)))
        row = np.full(TOP_K, -1, np.int64)
        try:
            found = peer.search(queries[q : q + 1], 1, schedule[level][1])[0]
            took = time.monotonic() - now
            row[: len(found)] = found[:TOP_K]
        except Exception as exc:
            took = float("nan")
            errors += 1
            first_error = first_error or repr(exc)
            time.sleep(0.05)  # a server that is down must not turn this loop into a flood of records
        sent.append(now)
        lat.append(took)
        qs.append(q)
        cons.append(level)
        ids.append(row)
    results.put(
        {
            "sent": np.array(sent),
            "latency": np.array(lat),
            "query": np.array(qs, np.int64),
            "consistency": np.array(cons, np.int64),
            "ids": np.array(ids, np.int64).reshape(-1, TOP_K),
            "errors": errors,
            "first_error": first_error,
        }
    )
    peer.close()
