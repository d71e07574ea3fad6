"""What a CDC task is: its source and target clusters, collections, name mapping and start position.

``TaskSpec.parse`` validates a request (the JSON body of ``POST /tasks``) and raises
``InvalidTask`` with a message a person can act on; nothing about a task is guessed.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from cdc.exceptions import InvalidTask
from schemas.collection import check_name
from schemas.exceptions import InvalidArgument

log = logging.getLogger(__name__)
Positions = dict[str, dict[int, int]]  # topic -> partition -> next offset to read
_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
START_MODES = ("earliest", "latest", "saved")
RUNNING, PAUSED = "running", "paused"


@dataclass(frozen=True)
class Endpoint:
    """One site: a Kafka cluster, the walvus namespace on it and the site name its writes carry."""

    bootstrap: str
    namespace: str = "walvus"
    site: str = ""  # WALVUS_SITE of the deployment; defaults to the namespace
    username: str | None = None
    password: str | None = None
    security_protocol: str | None = None  # default SASL_PLAINTEXT when a username is given

    @classmethod
    def parse(cls, role: str, raw: Any, default_namespace: str | None = None) -> Endpoint:
        if isinstance(raw, str):
            raw = {"bootstrap": raw}
        if not isinstance(raw, dict):
            raise InvalidTask(
                f"{role} must be an object with 'bootstrap' (and optional namespace, site, ...)"
            )
        _no_extra(role, raw, {"bootstrap", "namespace", "site", "username", "password", "security_protocol"})
        bootstrap = raw.get("bootstrap")
        if not isinstance(bootstrap, str) or not re.fullmatch(r"[^\s,]+:\d+(,[^\s,]+:\d+)*", bootstrap):
            raise InvalidTask(f"{role}.bootstrap must be host:port[,host:port...], got {bootstrap!r}")
        ns = raw.get("namespace") or default_namespace or "walvus"
        if not isinstance(ns, str) or not _NAMESPACE.fullmatch(ns):
            raise InvalidTask(f"{role}.namespace must match {_NAMESPACE.pattern}, got {ns!r}")
        site = raw.get("site") or ns
        for key in ("site", "username", "password", "security_protocol"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise InvalidTask(f"{role}.{key} must be a string")
        if raw.get("password") and not raw.get("username"):
            raise InvalidTask(f"{role}.password is given without {role}.username")
        proto = raw.get("security_protocol")
        if proto is not None and proto not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise InvalidTask(f"{role}.security_protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        return cls(bootstrap, ns, site, raw.get("username"), raw.get("password"), proto)

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings for this cluster; librdkafka's log lines go through Python logging."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "logger": logging.getLogger("rdkafka")}
        if self.username:
            conf.update(
                {
                    "security.protocol": self.security_protocol or "SASL_PLAINTEXT",
                    "sasl.mechanisms": "PLAIN",
                    "sasl.username": self.username,
                    "sasl.password": self.password or "",
                }
            )
        elif self.security_protocol:
            conf["security.protocol"] = self.security_protocol
        return conf

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if v is not None}
        if "password" in d and not secrets:
            d["password"] = "***"
        return d


@dataclass(frozen=True)
class TaskSpec:
    """A replication task. ``collections`` None means every collection, including later ones."""

    name: str
    source: Endpoint
    target: Endpoint
    collections: tuple[str, ...] | None = None
    name_map: dict[str, str] = field(default_factory=dict)  # source name -> target name
    start: str = "earliest"
    start_positions: Positions = field(default_factory=dict)  # resolved at creation (latest, saved)
    task_id: str = ""
    state: str = RUNNING
    created_at: float = 0.0
    rbac: bool = False  # also replicate users, roles, grants and privilege groups

    @property
    def transactional_id(self) -> str:
        return f"walvus-cdc-{self.task_id}"

    def wants(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def target_name(self, collection: str) -> str:
        return self.name_map.get(collection, collection)

    def with_state(self, state: str) -> TaskSpec:
        return replace(self, state=state)

    @classmethod
    def parse(cls, raw: Any) -> TaskSpec:
        """Validate a create request. Raises ``InvalidTask``; never returns a half-valid task."""
        if not isinstance(raw, dict):
            raise InvalidTask("the request body must be a JSON object")
        _no_extra("task", raw, {"name", "source", "target", "collections", "map", "start", "rbac"})
        name = raw.get("name")
        if not isinstance(name, str) or not _TASK_NAME.fullmatch(name):
            raise InvalidTask(f"name must match {_TASK_NAME.pattern}, got {name!r}")
        if "source" not in raw or "target" not in raw:
            raise InvalidTask("source and target are required (each at least {'bootstrap': 'host:port'})")
        source = Endpoint.parse("source", raw["source"])
        target = Endpoint.parse("target", raw["target"], default_namespace=source.namespace)
        if source.site == target.site:
            raise InvalidTask(
                f"source and target have the same site name {source.site!r}: give each its WALVUS_SITE "
                "(source.site, target.site) so that loop prevention can tell them apart"
            )
        if source.bootstrap == target.bootstrap and source.namespace == target.namespace:
            raise InvalidTask("source and target are the same cluster and namespace")
        collections = _collections(raw.get("collections"))
        name_map = _name_map(raw.get("map"), collections)
        start, positions = _start(raw.get("start", "earliest"))
        rbac = raw.get("rbac", False)
        if not isinstance(rbac, bool):
            raise InvalidTask(f"rbac must be true or false (replicate users, roles and grants), got {rbac!r}")
        return cls(name, source, target, collections, name_map, start, positions, rbac=rbac)

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        return {
            "id": self.task_id,
            "name": self.name,
            "state": self.state,
            "source": self.source.to_dict(secrets=secrets),
            "target": self.target.to_dict(secrets=secrets),
            "collections": list(self.collections) if self.collections is not None else None,
            "map": dict(self.name_map),
            "start": self.start,
            "start_positions": positions_to_json(self.start_positions),
            "created_at": self.created_at,
            "rbac": self.rbac,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        """Read a stored task (``to_dict(secrets=True)``)."""
        cols = d.get("collections")
        return cls(
            name=d["name"],
            source=Endpoint(**d["source"]),
            target=Endpoint(**d["target"]),
            collections=tuple(cols) if cols is not None else None,
            name_map=dict(d.get("map") or {}),
            start=d.get("start", "earliest"),
            start_positions=positions_from_json(d.get("start_positions") or {}),
            task_id=d["id"],
            state=d.get("state", RUNNING),
            created_at=float(d.get("created_at", 0.0)),
            rbac=bool(d.get("rbac", False)),
        )

    def created(self) -> TaskSpec:
        return replace(self, task_id=uuid.uuid4().hex[:16], created_at=time.time())


def positions_to_json(p: Positions) -> dict[str, dict[str, int]]:
    return {t: {str(k): int(v) for k, v in sorted(parts.items())} for t, parts in sorted(p.items())}


def positions_from_json(raw: Any) -> Positions:
    """``{"topic": {"0": 12, "1": 40}}`` -> positions. Raises ``InvalidTask`` on anything else."""
    if not isinstance(raw, dict):
        raise InvalidTask('saved positions must be an object {"<topic>": {"<partition>": <offset>}}')
    out: Positions = {}
    for topic, parts in raw.items():
        if not isinstance(topic, str) or not isinstance(parts, dict):
            raise InvalidTask(f"saved positions of {topic!r} must be an object {{partition: offset}}")
        out[topic] = {}
        for p, off in parts.items():
            try:
                pi = int(p)
            except (TypeError, ValueError):
                raise InvalidTask(f"partition {p!r} of {topic} is not an integer") from None
            if isinstance(off, bool) or not isinstance(off, int) or off < 0 or pi < 0:
                raise InvalidTask(f"offset of {topic}[{p}] must be a non-negative integer, got {off!r}")
            out[topic][pi] = off
    return out


def _no_extra(where: str, raw: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise InvalidTask(
            f"unknown field(s) in {where}: {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}"
        )


def _check_collection_name(what: str, name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidTask(f"{what} must be a string, got {name!r}")
    db, _, plain = name.rpartition("/")  # a collection outside `default` is named db/name
    try:
        if db:
            check_name("database", db)
        check_name("collection", plain)
    except InvalidArgument as exc:
        raise InvalidTask(f"{what}: {exc.message}") from None
    return name


def _collections(raw: Any) -> tuple[str, ...] | None:
    if raw is None or raw == "*":
        return None
    if isinstance(raw, str):
        raw = [c.strip() for c in raw.split(",") if c.strip()]
    if not isinstance(raw, list) or not raw:
        raise InvalidTask("collections must be a non-empty list of names (or omitted for all)")
    names = tuple(_check_collection_name("collections[]", c) for c in raw)
    if len(set(names)) != len(names):
        raise InvalidTask("collections lists a name twice")
    return names


def _name_map(raw: Any, collections: tuple[str, ...] | None) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidTask('map must be an object {"source name": "target name"}')
    out = {
        _check_collection_name("map key", k): _check_collection_name("map value", v) for k, v in raw.items()
    }
    if collections is not None:
        stray = sorted(set(out) - set(collections))
        if stray:
            raise InvalidTask(f"map renames collections that the task does not replicate: {', '.join(stray)}")
    targets = [out.get(c, c) for c in (collections or out)]
    if len(set(targets)) != len(targets):
        raise InvalidTask("map sends two collections to the same target name")
    return out


def _start(raw: Any) -> tuple[str, Positions]:
    if raw in ("earliest", "latest"):
        return raw, {}
    if isinstance(raw, dict):  # saved positions, bare or as `walvus cdc positions` prints them
        return "saved", positions_from_json(raw["positions"] if set(raw) == {"positions"} else raw)
    raise InvalidTask(
        f'start must be "earliest", "latest" or saved positions {{"<topic>": {{...}}}}, got {raw!r}'
    )
