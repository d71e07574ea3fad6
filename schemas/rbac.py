"""Access-control records on the catalog topic: users, roles, role members, grants, privilege groups.

Each is one small JSON record under its own key, so two gateways changing different grants never
overwrite each other, and compaction keeps the latest state per key:

- ``user:<name>``: a user and the argon2 hash of its password (``RbacUser``);
- ``role:<name>``: a role (``RbacRole``);
- ``member:<user>/<role>``: the user holds the role (``RoleMember``);
- ``grant:<role>/<object type>/<db>/<object name>/<privilege>``: a privilege granted (``Grant``);
- ``privgroup:<name>``: a custom privilege group and its privileges (``PrivilegeGroup``).

A removed one keeps a record with ``state = "dropped"`` (a value, not a tombstone, so CDC can tell
which site it came from), as aliases do. Names cannot hold ``/`` or ``:``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

ACTIVE, DROPPED = "active", "dropped"
RBAC_KEY_PREFIXES = ("user:", "role:", "member:", "grant:", "privgroup:")


def is_rbac_key(key: str) -> bool:
    return key.startswith(RBAC_KEY_PREFIXES)


class JsonRecord:
    """JSON round trip and the active flag, shared by every access-control record."""

    kind: ClassVar[str] = ""
    state: str

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    def to_json(self) -> bytes:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}
        return json.dumps({**d, "kind": self.kind}, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Any:
        d = json.loads(raw)
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class RbacUser(JsonRecord):
    name: str
    password_hash: str  # argon2id, never the password
    description: str = ""
    created_ts: int = 0
    state: str = ACTIVE
    origin: str = ""

    kind: ClassVar[str] = "user"

    @property
    def key(self) -> str:
        return f"user:{self.name}"


@dataclass(frozen=True)
class RbacRole(JsonRecord):
    name: str
    description: str = ""
    created_ts: int = 0
    state: str = ACTIVE
    origin: str = ""

    kind: ClassVar[str] = "role"

    @property
    def key(self) -> str:
        return f"role:{self.name}"


@dataclass(frozen=True)
class RoleMember(JsonRecord):
    user: str
    role: str
    state: str = ACTIVE
    origin: str = ""

    kind: ClassVar[str] = "member"

    @property
    def key(self) -> str:
        return f"member:{self.user}/{self.role}"


@dataclass(frozen=True)
class Grant(JsonRecord):
    """``privilege`` (a privilege or a group) on ``object_type``/``object_name`` in ``db_name``
    (``*``: every database) to ``role``."""

    role: str
    object_type: str  # Global, Collection or User
    object_name: str  # a collection or user name, or *
    db_name: str
    privilege: str
    grantor: str = ""
    state: str = ACTIVE
    origin: str = ""

    kind: ClassVar[str] = "grant"

    @property
    def key(self) -> str:
        return f"grant:{self.role}/{self.object_type}/{self.db_name}/{self.object_name}/{self.privilege}"


@dataclass(frozen=True)
class PrivilegeGroup(JsonRecord):
    name: str
    privileges: tuple[str, ...] = field(default_factory=tuple)
    state: str = ACTIVE
    origin: str = ""

    kind: ClassVar[str] = "privgroup"

    @property
    def key(self) -> str:
        return f"privgroup:{self.name}"


RbacRecord = RbacUser | RbacRole | RoleMember | Grant | PrivilegeGroup
_BY_PREFIX: dict[str, type] = {
    "user:": RbacUser,
    "role:": RbacRole,
    "member:": RoleMember,
    "grant:": Grant,
    "privgroup:": PrivilegeGroup,
}


def decode_rbac(key: str, raw: bytes) -> RbacRecord:
    for prefix, cls in _BY_PREFIX.items():
        if key.startswith(prefix):
            return cls.from_json(raw)  # type: ignore[no-any-return]
    raise ValueError(f"not an access-control key: {key}")
