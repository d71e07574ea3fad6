"""Integration tests for walvus.kafka.local: a real single-node KRaft broker per test.

Jars are resolved into ~/.cache/walvus (Maven, once) and reused across runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from walvus.kafka import (
    DEFAULT_CACHE_DIR,
    KafkaLauncherError,
    LocalKafka,
    bootstrap_from_env,
    free_port,
    new_cluster_id,
    resolve_jars,
)
from walvus.kafka.local import INSTALL_HINT

MakeKafka = Callable[..., LocalKafka]


@pytest.fixture(scope="module")
def libs() -> Path:
    return resolve_jars(DEFAULT_CACHE_DIR)


@pytest.fixture
def make_kafka(libs: Path, tmp_path: Path) -> Iterator[MakeKafka]:
    made: list[LocalKafka] = []

    def make(name: str = "kafka", overrides: dict[str, str] | None = None) -> LocalKafka:
        port, cport = free_port(), free_port()
        kafka = LocalKafka(tmp_path / name, port=port, controller_port=cport, overrides=overrides)
        made.append(kafka)
        return kafka

    yield make
    for kafka in made:
        kafka.kill()


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    futures[name].result(timeout=30)


def produce(bootstrap: str, topic: str, *values: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, value=value, key=b"k")
    assert producer.flush(30) == 0


def consume_all(bootstrap: str, topic: str, expected: int, read_committed: bool = False) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[bytes] = []
    try:
        for _ in range(100):
            if len(got) >= expected:
                break
            msg = consumer.poll(0.3)
            if msg is None or msg.error():
                continue
            got.append(msg.value())
    finally:
        consumer.close()
    return got


# --- no broker needed ---------------------------------------------------------------------------


def test_cluster_id_format() -> None:
    for _ in range(2000):
        cid = new_cluster_id()
        assert len(cid) == 22 and "=" not in cid and not cid.startswith("-")


def test_bootstrap_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert bootstrap_from_env() is None
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    assert bootstrap_from_env() == "broker:9092"


def test_missing_maven_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(KafkaLauncherError, match="mvn") as err:
        resolve_jars(tmp_path / "cache")
    assert INSTALL_HINT in str(err.value)


def test_bad_heap_rejected(tmp_path: Path) -> None:
    with pytest.raises(KafkaLauncherError, match="heap"):
        LocalKafka(tmp_path, heap="lots")


def test_default_ports_and_config(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path, port=19092)
    assert kafka.controller_port == 19192 and kafka.bootstrap == "127.0.0.1:19092"
    conf = kafka.config()
    assert conf["controller.quorum.voters"] == "1@127.0.0.1:19192"
    assert conf["log.retention.ms"] == "-1" and "log.retention.hours" not in conf
    assert conf["auto.create.topics.enable"] == "false"


# --- real brokers --------------------------------------------------------------------------------


@pytest.mark.integration
def test_start_and_ready(make_kafka: MakeKafka) -> None:
    kafka = make_kafka()
    assert kafka.start() == kafka.bootstrap
    assert kafka.is_running and kafka.pid_file.read_text().strip() == str(kafka.pid)
    meta = AdminClient({"bootstrap.servers": kafka.bootstrap}).list_topics(timeout=10)
    assert meta.cluster_id == kafka.cluster_id == (kafka.data_dir / "cluster.id").read_text().strip()
    assert list(meta.brokers) == [1]
    props = kafka.properties_file.read_text()
    assert "process.roles=broker,controller" in props and f"log.dirs={kafka.data_dir}/logs" in props
    assert kafka.start() == kafka.bootstrap  # idempotent while running
    assert kafka.log_file.stat().st_size < 20_000  # log4j at WARN keeps it small


@pytest.mark.integration
def test_two_brokers_side_by_side(make_kafka: MakeKafka) -> None:
    a, b = make_kafka("a"), make_kafka("b")
    a.start()
    b.start()
    assert a.cluster_id != b.cluster_id
    create_topic(a.bootstrap, "only-on-a")
    create_topic(b.bootstrap, "only-on-b")
    produce(a.bootstrap, "only-on-a", b"from-a")
    produce(b.bootstrap, "only-on-b", b"from-b")
    topics_a = AdminClient({"bootstrap.servers": a.bootstrap}).list_topics(timeout=10).topics
    topics_b = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=10).topics
    assert "only-on-a" in topics_a and "only-on-b" not in topics_a
    assert "only-on-b" in topics_b and "only-on-a" not in topics_b
    assert consume_all(a.bootstrap, "only-on-a", 1) == [b"from-a"]
    assert consume_all(b.bootstrap, "only-on-b", 1) == [b"from-b"]


@pytest.mark.integration
def test_restart_keeps_data(make_kafka: MakeKafka) -> None:
    # After a SIGKILL the restarted controller waits out the old registration's session
    # (broker.session.timeout.ms, default 9 s) before the broker can register again; shorten it.
    kafka = make_kafka(
        overrides={"broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "1000"}
    )
    kafka.start()
    cluster_id = kafka.cluster_id
    create_topic(kafka.bootstrap, "wal")
    produce(kafka.bootstrap, "wal", b"one", b"two")
    kafka.stop()
    kafka.start()
    assert kafka.cluster_id == cluster_id
    assert consume_all(kafka.bootstrap, "wal", 2) == [b"one", b"two"]
    # a hard kill loses nothing that was acknowledged either
    produce(kafka.bootstrap, "wal", b"three")
    kafka.kill()
    kafka.start()
    assert consume_all(kafka.bootstrap, "wal", 3) == [b"one", b"two", b"three"]
    assert "broker.session.timeout.ms=3000" in kafka.properties_file.read_text()


@pytest.mark.integration
def test_transactions_on_one_node(make_kafka: MakeKafka) -> None:
    kafka = make_kafka()
    kafka.start()
    create_topic(kafka.bootstrap, "txn")
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": "walvus-test"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("txn", value=b"committed")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce("txn", value=b"aborted")
    producer.abort_transaction(30)
    assert consume_all(kafka.bootstrap, "txn", 1, read_committed=True) == [b"committed"]


@pytest.mark.integration
def test_stop_is_clean(make_kafka: MakeKafka) -> None:
    kafka = make_kafka()
    with kafka:
        assert kafka.is_running
        create_topic(kafka.bootstrap, "t")
    assert not kafka.is_running
    assert kafka._proc is not None and kafka._proc.returncode in (0, 143)  # 143: JVM exit after SIGTERM
    assert (kafka.data_dir / "logs" / ".kafka_cleanshutdown").exists()
    assert not kafka.pid_file.exists()
    assert " ERROR " not in kafka.log_file.read_text()
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": kafka.bootstrap, "log_level": 0}).list_topics(timeout=1)
    assert kafka.stop() == kafka._proc.returncode  # stopping twice is harmless


@pytest.mark.integration
def test_port_clash_is_refused(make_kafka: MakeKafka) -> None:
    a = make_kafka("a")
    a.start()
    b = make_kafka("b")
    b.port = a.port
    with pytest.raises(KafkaLauncherError, match=f"port in use port={a.port}"):
        b.start()
    assert not b.is_running and a.is_running


@pytest.mark.integration
def test_startup_failure_reports_log_tail(make_kafka: MakeKafka) -> None:
    kafka = make_kafka()
    kafka.overrides["num.partitions"] = "zero"  # rejected by the storage tool before any broker runs
    with pytest.raises(KafkaLauncherError, match="storage format failed") as err:
        kafka.start()
    assert "Invalid value zero for configuration num.partitions" in str(err.value)
    del kafka.overrides["num.partitions"]
    kafka.start()
    kafka.stop()
    kafka.overrides["num.partitions"] = "zero"  # formatted now: only the broker sees it, and exits
    with pytest.raises(KafkaLauncherError, match="exited during startup rc=1") as err:
        kafka.start()
    assert "Invalid value zero for configuration num.partitions" in str(err.value)
    assert "\tat " not in str(err.value)
    assert not kafka.is_running and not kafka.pid_file.exists()


@pytest.mark.integration
def test_start_timeout_kills_the_broker(make_kafka: MakeKafka) -> None:
    kafka = make_kafka()
    with pytest.raises(KafkaLauncherError, match="kafka not ready"):
        kafka.start(timeout=0.5)
    assert not kafka.is_running and not kafka.pid_file.exists()
    assert kafka.start() == kafka.bootstrap  # the half-started node left nothing in the way
