"""The task API over real HTTP, with a fake service behind it: routes, status codes, errors, metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cdc.api import ApiServer
from cdc.client import ApiError, CdcClient
from cdc.exceptions import ClusterUnreachable, TaskNotFound, UnknownCollection
from cdc.lag import ShardLag
from cdc.spec import TaskSpec


class FakeStore:
    def __init__(self, tasks: list[TaskSpec]) -> None:
        self.tasks = tasks

    def all(self) -> list[TaskSpec]:
        return list(self.tasks)


class FakeService:
    """Just enough of ``CdcService`` for the HTTP layer and the metrics collector."""

    def __init__(self) -> None:
        spec = TaskSpec.parse(
            {"name": "t1", "source": "a:1", "target": {"bootstrap": "b:1", "namespace": "x"}}
        )
        self.spec = spec.created()
        self.store = FakeStore([self.spec])
        self.calls: list[tuple[str, Any]] = []

    def create(self, body: Any) -> dict:
        self.calls.append(("create", body))
        if not isinstance(body, dict):
            TaskSpec.parse(body)
        if body.get("collections") == ["missing"]:
            raise UnknownCollection(["missing"], "a:1")
        if body.get("target") == "down:1":
            raise ClusterUnreachable("target", "down:1", "timed out")
        TaskSpec.parse(body)
        return {"id": "new", "name": body["name"]}

    def list(self) -> list[dict]:
        return [self.spec.to_dict()]

    def describe(self, ref: str) -> dict:
        if ref not in ("t1", self.spec.task_id):
            raise TaskNotFound(ref)
        return {**self.spec.to_dict(), "lag": {"records": 3}, "lag_by_shard": []}

    def pause(self, ref: str) -> dict:
        self.calls.append(("pause", ref))
        return self.describe(ref)

    def resume(self, ref: str) -> dict:
        self.calls.append(("resume", ref))
        return self.describe(ref)

    def delete(self, ref: str) -> dict:
        self.describe(ref)
        return {"deleted": ref}

    def positions(self, ref: str) -> dict:
        return {"positions": {"a.wal.1": {"0": 4}}}

    def replicators(self) -> dict:
        return {}

    def lag(self, task: TaskSpec, max_age: float = 0.0) -> tuple[list[ShardLag], dict, float]:
        return [ShardLag("a.wal.1", 0, 4, 7, 3, 1.5)], {}, 1.0


@pytest.fixture
def api() -> Iterator[tuple[CdcClient, FakeService]]:
    service = FakeService()
    server = ApiServer(service, "127.0.0.1", 0).start()  # type: ignore[arg-type]
    yield CdcClient(server.url, timeout=10), service
    server.stop()


def test_routes(api: tuple[CdcClient, FakeService]) -> None:
    client, service = api
    assert client.health() == {"status": "ok", "tasks": 1}
    assert [t["name"] for t in client.list()] == ["t1"]
    assert client.get("t1")["lag"] == {"records": 3}
    assert client.pause("t1")["name"] == "t1" and client.resume("t1")["name"] == "t1"
    assert client.positions("t1") == {"a.wal.1": {"0": 4}}
    assert client.request("GET", "/tasks/t1/lag") == {"lag": {"records": 3}, "lag_by_shard": []}
    good = {"name": "t2", "source": "a:1", "target": {"bootstrap": "b:1", "namespace": "x"}}
    assert client.create(good) == {"id": "new", "name": "t2"}
    assert client.delete("t1") == {"deleted": "t1"}
    assert ("pause", "t1") in service.calls and ("create", good) in service.calls


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "kind"),
    [
        ("POST", "/tasks", {"name": "x", "source": "a:1", "target": "a:1"}, 400, "InvalidTask"),
        (
            "POST",
            "/tasks",
            {"name": "x", "source": "a:1", "target": "b:1", "collections": ["missing"]},
            400,
            "UnknownCollection",
        ),
        ("POST", "/tasks", {"name": "x", "source": "a:1", "target": "down:1"}, 502, "ClusterUnreachable"),
        ("POST", "/tasks", None, 400, "InvalidTask"),
        ("GET", "/tasks/nope", None, 404, "TaskNotFound"),
        ("POST", "/tasks/nope/pause", None, 404, "TaskNotFound"),
        ("GET", "/nowhere", None, 404, "NotFound"),
        ("PUT", "/tasks", None, 405, "MethodNotAllowed"),
        ("GET", "/tasks/t1/explode", None, 404, "NotFound"),
    ],
)
def test_errors_have_a_status_a_type_and_a_message(api, method, path, body, status, kind) -> None:
    client, _ = api
    with pytest.raises(ApiError) as err:
        client.request(method, path, body)
    assert (err.value.status, err.value.type) == (status, kind)
    assert err.value.message


def test_malformed_json_is_a_400(api) -> None:
    client, service = api
    with pytest.raises(ApiError) as err:
        client.request("POST", "/tasks", raw=b'{"name": ')
    assert err.value.status == 400 and "not valid JSON" in err.value.message
    assert not [c for c in service.calls if c[0] == "create"]


def test_unreachable_service_is_a_clear_error() -> None:
    from tests.ports import free_port

    with pytest.raises(ApiError, match="did not answer"):
        CdcClient(f"http://127.0.0.1:{free_port()}", timeout=2).list()


def test_metrics(api) -> None:
    client, _ = api
    text = client.metrics()
    assert 'walvus_cdc_lag_records{partition="0",task="t1",topic="a.wal.1"} 3.0' in text
    assert 'walvus_cdc_lag_seconds{partition="0",task="t1",topic="a.wal.1"} 1.5' in text
    assert 'walvus_cdc_task_state{state="running",task="t1"} 1.0' in text
