"""Task requests: what is accepted, and the error a person gets for what is not."""

from __future__ import annotations

import argparse
import json
import os
import stat
from pathlib import Path

import pytest

from cdc.cli import build_request
from cdc.exceptions import InvalidTask, TaskExists, TaskNotFound, TaskStoreLocked
from cdc.spec import PAUSED, TaskSpec, positions_from_json, positions_to_json
from cdc.store import TaskStore

A = {"bootstrap": "10.0.0.1:9092", "namespace": "walvus", "site": "site-a"}
B = {"bootstrap": "10.1.0.1:9092", "site": "site-b", "username": "cdc", "password": "s3cret"}


def _req(**changes: object) -> dict:
    return {"name": "a-to-b", "source": A, "target": B, **changes}


def test_a_full_request_is_parsed() -> None:
    spec = TaskSpec.parse(_req(collections=["docs", "news"], map={"docs": "docs_b"}, start="latest"))
    assert spec.collections == ("docs", "news")
    assert spec.target.namespace == "walvus"  # defaults to the source's
    assert spec.target_name("docs") == "docs_b" and spec.target_name("news") == "news"
    assert spec.wants("docs") and not spec.wants("other")
    assert spec.start == "latest"
    conf = spec.target.client_config()
    assert conf["security.protocol"] == "SASL_PLAINTEXT" and conf["sasl.username"] == "cdc"


def test_defaults_all_collections_earliest_and_site_is_the_namespace() -> None:
    spec = TaskSpec.parse(
        {"name": "t", "source": "h1:1", "target": {"bootstrap": "h2:2", "namespace": "other"}}
    )
    assert spec.collections is None and spec.wants("anything")
    assert spec.start == "earliest" and spec.start_positions == {}
    assert (spec.source.site, spec.target.site) == ("walvus", "other")


def test_saved_positions_are_a_start() -> None:
    spec = TaskSpec.parse(_req(start={"walvus.wal.7": {"0": 5, "1": 0}}))
    assert spec.start == "saved" and spec.start_positions == {"walvus.wal.7": {0: 5, 1: 0}}
    assert positions_from_json(positions_to_json(spec.start_positions)) == spec.start_positions
    wrapped = TaskSpec.parse(
        _req(start={"positions": {"walvus.wal.7": {"0": 5, "1": 0}}})
    )  # GET .../positions
    assert wrapped.start_positions == spec.start_positions


@pytest.mark.parametrize(
    ("request_body", "words"),
    [
        ([], "JSON object"),
        (_req(name="bad name!"), "name must match"),
        ({"name": "t", "source": A}, "source and target are required"),
        (_req(source={"bootstrap": "nohostport"}), "source.bootstrap"),
        (_req(source=42), "source must be an object"),
        (_req(target={**B, "site": "site-a"}), "same site name"),
        (_req(target={"bootstrap": A["bootstrap"], "site": "x"}), "same cluster and namespace"),
        (_req(target={**B, "namespace": "has space"}), "target.namespace"),
        (_req(target={"bootstrap": "h:1", "password": "p"}), "without target.username"),
        (_req(target={**B, "security_protocol": "MAGIC"}), "security_protocol"),
        (_req(target={**B, "extra": 1}), "unknown field(s) in target: extra"),
        (_req(collectons=["x"]), "unknown field(s) in task: collectons"),
        (_req(collections=[]), "non-empty list"),
        (_req(collections=["ok", "not ok"]), "Invalid collection name: not ok"),
        (_req(collections=["a", "a"]), "twice"),
        (_req(collections=["a"], map={"b": "c"}), "does not replicate: b"),
        (_req(map={"a": "c", "b": "c"}), "same target name"),
        (_req(map=["a:b"]), "map must be an object"),
        (_req(start="yesterday"), "start must be"),
        (_req(start={"t": {"x": 1}}), "not an integer"),
        (_req(start={"t": {"0": -1}}), "non-negative"),
        (_req(start={"t": 5}), "must be an object"),
        (_req(rbac="yes"), "rbac must be true or false"),
    ],
)
def test_malformed_requests_are_rejected_with_the_reason(request_body: object, words: str) -> None:
    with pytest.raises(InvalidTask) as err:
        TaskSpec.parse(request_body)
    assert words in err.value.message
    assert err.value.http_status == 400


def test_passwords_are_masked_except_in_the_store() -> None:
    spec = TaskSpec.parse(_req()).created()
    assert spec.to_dict()["target"]["password"] == "***"
    assert spec.to_dict(secrets=True)["target"]["password"] == "s3cret"
    assert TaskSpec.from_dict(spec.to_dict(secrets=True)) == spec


def test_store_survives_a_restart_and_keeps_secrets_private(tmp_path: Path) -> None:
    path = tmp_path / "cdc" / "tasks.json"
    store = TaskStore(path).open()
    spec = TaskSpec.parse(_req()).created()
    store.add(spec)
    with pytest.raises(TaskExists):
        store.add(TaskSpec.parse(_req()).created())
    store.put(spec.with_state(PAUSED))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(TaskStoreLocked):
        TaskStore(path).open()  # one `cdc serve` per store
    store.close()
    again = TaskStore(path).open()
    assert again.get("a-to-b") == spec.with_state(PAUSED) == again.get(spec.task_id)
    again.remove(spec.task_id)
    with pytest.raises(TaskNotFound):
        again.get("a-to-b")
    assert json.loads(path.read_text()) == []
    again.close()


def _args(**kw: object) -> argparse.Namespace:
    base = {
        "name": "t",
        "source": "h1:1",
        "target": "h2:2",
        "collections": None,
        "map": [],
        "start": "earliest",
    }
    for role in ("source", "target"):
        for key in ("namespace", "site", "username", "password", "security_protocol"):
            base[f"{role}_{key}"] = None
    return argparse.Namespace(**{**base, **kw})


def test_cli_builds_the_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = tmp_path / "pos.json"
    saved.write_text('{"walvus.wal.1": {"0": 3}}')
    monkeypatch.setenv("WALVUS_CDC_TARGET_PASSWORD", "from-env")
    body = build_request(
        _args(
            collections="a, b", map=["a:x", "b:y"], start=f"@{saved}", target_username="u", target_site="s2"
        )
    )
    assert body["collections"] == ["a", "b"] and body["map"] == {"a": "x", "b": "y"}
    assert body["start"] == {"walvus.wal.1": {"0": 3}}
    assert body["target"] == {"bootstrap": "h2:2", "site": "s2", "username": "u", "password": "from-env"}
    assert TaskSpec.parse(body).start_positions == {"walvus.wal.1": {0: 3}}
    with pytest.raises(SystemExit, match="source:target"):
        build_request(_args(map=["nocolon"]))
    with pytest.raises(SystemExit, match="positions JSON"):
        build_request(_args(start="{bad"))


def test_collections_outside_default_are_named_db_slash_name() -> None:
    base = {
        "name": "t",
        "source": {"bootstrap": "a:1", "namespace": "a"},
        "target": {"bootstrap": "b:1", "namespace": "b"},
    }
    spec = TaskSpec.parse({**base, "collections": ["sales/docs", "docs"]})
    assert spec.wants("sales/docs") and spec.wants("docs") and not spec.wants("other/docs")
    with pytest.raises(InvalidTask, match="Invalid database name"):
        TaskSpec.parse({**base, "collections": ["bad-db/docs"]})
