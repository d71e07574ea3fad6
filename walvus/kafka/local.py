"""Local single-node Kafka (KRaft, broker+controller in one JVM) for development and tests.

The broker jars are resolved once with Maven from ``pom.xml`` next to this module into
``<cache_dir>/kafka-<version>/libs``; each :class:`LocalKafka` owns one data directory holding
``server.properties``, the persisted cluster id, the pid file, ``kafka.log`` and the log dirs.
Kafka is walvus's write-ahead log, so retention is disabled (``log.retention.ms=-1``).
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from walvus.kafka.exceptions import KafkaLauncherError
from walvus.processes import die_with_parent

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
DEFAULT_CACHE_DIR = Path("~/.cache/walvus")
INSTALL_HINT = "apt-get install -y maven openjdk-17-jre-headless"
_HERE = Path(__file__).parent
_POM = _HERE / "pom.xml"
_LOG4J = _HERE / "log4j2.properties"
_MARKER = ".walvus-complete"
_RUNNING: set[LocalKafka] = set()  # started and not yet stopped, killed at exit


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise KafkaLauncherError(f"'{tool}' not found on PATH; install it with: {INSTALL_HINT}")
    return path


def resolve_jars(cache_dir: Path) -> Path:
    """Return ``<cache_dir>/kafka-<version>/libs`` holding the broker jars, running Maven if needed."""
    root = Path(cache_dir).expanduser() / f"kafka-{KAFKA_VERSION}"
    libs = root / "libs"
    if (libs / _MARKER).exists():
        return libs
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be resolving the same cache
        if (libs / _MARKER).exists():
            return libs
        mvn = _require("mvn")
        _require("java")
        tmp = Path(tempfile.mkdtemp(prefix="libs.tmp-", dir=root))
        cmd = [mvn, "-B", "-q", "-f", str(_POM), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"]  # fmt: skip
        logger.info("resolving kafka jars version=%s dest=%s", KAFKA_VERSION, libs)
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        jars = list(tmp.glob("*.jar"))
        if proc.returncode != 0 or not jars:
            shutil.rmtree(tmp, ignore_errors=True)
            out = (proc.stdout + proc.stderr)[-4000:]
            raise KafkaLauncherError(f"maven failed rc={proc.returncode} cmd={' '.join(cmd)}\n{out}")
        (tmp / _MARKER).write_text(f"{len(jars)}\n")
        if libs.exists():  # a previous, incomplete attempt
            shutil.rmtree(libs)
        os.rename(tmp, libs)
        logger.info("resolved kafka jars count=%d seconds=%.1f", len(jars), time.monotonic() - started)
    return libs


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does: ignore TIME_WAIT
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def bootstrap_from_env() -> str | None:
    """Return ``KAFKA_BOOTSTRAP_SERVERS`` when set (an external Kafka to use instead of a local one)."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


def new_cluster_id() -> str:
    """16 random bytes, URL-safe base64 without padding, never starting with '-' (as Kafka requires)."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def _drop_frames(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a JVM log without stack frames: messages and "Caused by" stay."""
    return "\n".join([ln for ln in text.splitlines() if not ln.startswith("\t")][-lines:])


def _xms(heap: str) -> str:
    """Initial heap: the smaller of ``heap`` and 128m (the JVM refuses Xms > Xmx)."""
    match = re.fullmatch(r"(\d+)([kmg]?)", heap.lower())
    if match is None:
        raise KafkaLauncherError(f"bad heap size heap={heap!r}; use e.g. '512m' or '1g'")
    size = int(match[1]) << {"": 0, "k": 10, "m": 20, "g": 30}[match[2]]
    return heap if size <= 128 << 20 else "128m"


class LocalKafka:
    """One combined broker+controller KRaft node on 127.0.0.1, its state kept in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 9092,
        controller_port: int | None = None,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        heap: str = "512m",
        overrides: Mapping[str, str] | None = None,
        die_with_launcher: bool = False,
    ) -> None:
        """``die_with_launcher``: the broker gets SIGTERM when this process dies, even by
        ``kill -9`` (``walvus up`` and ``walvus kafka``; start it from the main thread)."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.controller_port = controller_port if controller_port is not None else port + 100
        self.cache_dir = Path(cache_dir).expanduser()
        self.heap = heap
        _xms(heap)  # validate early
        self.overrides = dict(overrides or {})
        self.log_file = self.data_dir / "kafka.log"
        self.pid_file = self.data_dir / "kafka.pid"
        self.launcher_file = self.data_dir / "kafka.launcher"  # pid of the process that started it
        self.die_with_launcher = die_with_launcher
        self.properties_file = self.data_dir / "server.properties"
        self.cluster_id: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def config(self) -> dict[str, str]:
        """The ``server.properties`` entries this node runs with."""
        cport = self.controller_port
        conf = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "delete.topic.enable": "true",
            "log.cleaner.dedupe.buffer.size": "16777216",
            "log.cleaner.threads": "1",
            "message.max.bytes": "68157440",
            "replica.fetch.max.bytes": "68157440",
            "log.segment.bytes": "67108864",
            # Kafka frees a truncated WAL's disk at its next retention check: every minute, not 5
            "log.retention.check.interval.ms": "60000",
            "log.retention.ms": "-1",  # the WAL is the source of truth: never delete it
        }
        conf.update(self.overrides)
        return conf

    def _cluster_id(self) -> str:
        id_file = self.data_dir / "cluster.id"
        if id_file.exists():
            return id_file.read_text().strip()
        cid = new_cluster_id()
        meta = self.data_dir / "logs" / "meta.properties"  # formatted before the id file existed
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    cid = line.split("=", 1)[1].strip()
        id_file.write_text(cid + "\n")
        return cid

    def _java(self, libs: Path, *args: str, heap: str) -> list[str]:
        return [_require("java"), f"-Xmx{heap}", f"-Xms{_xms(heap)}", "-XX:+UseG1GC",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={_LOG4J}",
                "-cp", f"{libs}/*", *args]  # fmt: skip

    def _check_stale_pid(self, timeout: float = 30) -> None:
        """A broker of this data dir still running: refuse while its launcher lives; stop it when
        the launcher is gone (a ``walvus up`` killed by ``kill -9`` left it behind)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"kafka.Kafka" not in cmdline or str(self.properties_file).encode() not in cmdline:
            return  # the pid was reused by another process
        try:
            launcher = int(self.launcher_file.read_text().strip())
        except (OSError, ValueError):
            launcher = None
        if launcher is None or _parent_of(pid) == launcher:
            raise KafkaLauncherError(f"a broker already runs here pid={pid} data_dir={self.data_dir}")
        logger.warning(
            "stopping a stale broker pid=%d data_dir=%s (its launcher pid=%d is gone)",
            pid,
            self.data_dir,
            launcher,
        )
        _stop_orphan(pid, timeout)

    def start(self, timeout: float = 60) -> str:
        """Format storage if needed, launch the broker and wait until it answers metadata requests."""
        if self.is_running:
            return self.bootstrap
        libs = resolve_jars(self.cache_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_stale_pid()
        for port in (self.port, self.controller_port):
            if _port_in_use(port):
                raise KafkaLauncherError(f"port in use port={port}; pick another (see free_port())")
        props = "".join(f"{k}={v}\n" for k, v in self.config().items())
        self.properties_file.write_text(f"# written by walvus.kafka.local; edits are overwritten\n{props}")
        self.cluster_id = cid = self._cluster_id()
        if not (self.data_dir / "logs" / "meta.properties").exists():  # formatting costs a JVM start
            fmt = self._java(libs, "kafka.tools.StorageTool", "format", "-t", cid, "-c",
                             str(self.properties_file), "--ignore-formatted", heap="256m")  # fmt: skip
            res = subprocess.run(fmt, capture_output=True, text=True, timeout=120)
            if res.returncode != 0:
                out = _drop_frames(res.stdout + res.stderr)
                raise KafkaLauncherError(f"storage format failed rc={res.returncode}\n{out}")
            logger.info("kafka storage formatted cluster_id=%s log_dirs=%s", cid, self.data_dir / "logs")
        cmd = self._java(libs, "kafka.Kafka", str(self.properties_file), heap=self.heap)
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        preexec = die_with_parent(signal.SIGTERM) if self.die_with_launcher else None
        with open(self.log_file, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.data_dir, start_new_session=True, preexec_fn=preexec,
            )  # fmt: skip
        self.launcher_file.write_text(f"{os.getpid()}\n")
        self.pid_file.write_text(f"{self._proc.pid}\n")
        _RUNNING.add(self)
        logger.info("kafka starting pid=%d bootstrap=%s data_dir=%s", self.pid, self.bootstrap, self.data_dir)
        started = time.monotonic()
        self._wait_ready(started + timeout)
        logger.info("kafka ready bootstrap=%s seconds=%.1f", self.bootstrap, time.monotonic() - started)
        return self.bootstrap

    def _wait_ready(self, deadline: float) -> None:
        admin: AdminClient | None = None
        while True:
            if not self.is_running:
                rc = self._finish()
                raise KafkaLauncherError(f"kafka exited during startup rc={rc}\n{self.log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise KafkaLauncherError(f"kafka not ready bootstrap={self.bootstrap}\n{self.log_tail()}")
            if admin is None:  # connect only once the port is open: librdkafka logs refused connects
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                except OSError:
                    time.sleep(0.2)
                    continue
                admin = AdminClient({"bootstrap.servers": self.bootstrap})
            try:
                meta = admin.list_topics(timeout=min(2.0, max(left, 0.1)))
                if meta.brokers and meta.cluster_id == self.cluster_id:  # not another broker on our port
                    return
            except KafkaException:
                pass
            time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines (stack frames left out) ``kafka.log`` got since the latest start."""
        try:
            with open(self.log_file, "rb") as f:
                f.seek(self._log_offset)
                data = f.read()
        except OSError:
            return "(no kafka.log)"
        return _drop_frames(data.decode(errors="replace"), lines)

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)  # own session: the pgid is the pid
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM (clean shutdown), then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            started = time.monotonic()
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("kafka stop timed out, killing pid=%d timeout=%s", self._proc.pid, timeout)
                self._signal(signal.SIGKILL)
                self._proc.wait()
            took = time.monotonic() - started
            logger.info("kafka stopped pid=%d rc=%s seconds=%.1f", self.pid, self._proc.returncode, took)
        return self._finish()

    def kill(self) -> int | None:
        """SIGKILL the broker at once (no clean shutdown); returns the exit code."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
            logger.info("kafka killed pid=%d", self._proc.pid)
        return self._finish()

    def _finish(self) -> int | None:
        _RUNNING.discard(self)
        if self._proc and self.pid_file.exists() and self.pid_file.read_text().strip() == str(self._proc.pid):
            self.pid_file.unlink()  # only our own: another launcher may have restarted this data dir
            self.launcher_file.unlink(missing_ok=True)
        return self._proc.returncode if self._proc else None

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the fields after "(comm)": state, ppid, ...


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")  # exited, not yet reaped by init


def _stop_orphan(pid: int, timeout: float) -> None:
    """SIGTERM a broker that is not our child (a clean shutdown), SIGKILL it after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pid, sig)  # the broker leads its own session
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while not _gone(pid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return
    raise KafkaLauncherError(f"a stale broker pid={pid} did not exit after SIGKILL")


@atexit.register
def _kill_leftovers() -> None:
    for kafka in list(_RUNNING):  # brokers run in their own session, so they would outlive us
        kafka.kill()
