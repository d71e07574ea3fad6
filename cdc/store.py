"""The task store: every task's spec and state in one JSON file, rewritten atomically.

The file holds credentials, so it is created with mode 0600. One ``walvus cdc serve`` owns a
store at a time: it holds an exclusive lock on ``<file>.lock`` (released by the kernel when the
process dies, even by SIGKILL). Source positions are *not* here: they live in the target cluster,
committed with the replicated records (see ``cdc.positions``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import IO

from cdc.exceptions import TaskExists, TaskNotFound, TaskStoreLocked
from cdc.spec import TaskSpec

log = logging.getLogger(__name__)


class TaskStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._lock_file: IO[str] | None = None
        self._tasks: dict[str, TaskSpec] = {}

    def open(self) -> TaskStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(self.path.with_suffix(self.path.suffix + ".lock"), "w")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise TaskStoreLocked(f"another `walvus cdc serve` uses the task store {self.path}") from None
        self._lock_file = lock
        if self.path.exists():
            raw = json.loads(self.path.read_text() or "[]")
            self._tasks = {d["id"]: TaskSpec.from_dict(d) for d in raw}
        log.info("task store opened path=%s tasks=%d", self.path, len(self._tasks))
        return self

    def close(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def all(self) -> list[TaskSpec]:
        with self._lock:
            return sorted(self._tasks.values(), key=lambda t: (t.created_at, t.name))

    def get(self, ref: str) -> TaskSpec:
        """A task by id or by name."""
        with self._lock:
            if ref in self._tasks:
                return self._tasks[ref]
            for t in self._tasks.values():
                if t.name == ref:
                    return t
        raise TaskNotFound(ref)

    def add(self, task: TaskSpec) -> None:
        with self._lock:
            if any(t.name == task.name for t in self._tasks.values()):
                raise TaskExists(task.name)
            self._tasks[task.task_id] = task
            self._save()

    def put(self, task: TaskSpec) -> None:
        with self._lock:
            if task.task_id not in self._tasks:
                raise TaskNotFound(task.name)
            self._tasks[task.task_id] = task
            self._save()

    def remove(self, task_id: str) -> None:
        with self._lock:
            if self._tasks.pop(task_id, None) is None:
                raise TaskNotFound(task_id)
            self._save()

    def _save(self) -> None:
        data = json.dumps([t.to_dict(secrets=True) for t in self._tasks.values()], indent=1)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
