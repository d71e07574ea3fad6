"""Changing users, roles, grants and privilege groups: each change is catalog records, checked first.

Milvus's rules and words: ``root`` and the roles ``admin`` and ``public`` always exist and cannot
be dropped; a role with grants is dropped only with ``force_drop``; a privilege is granted on an
object type it belongs to (v1) or at its level (v2: cluster, database, collection); granting what
is granted, revoking what is not, and dropping a missing user succeed.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from schemas.exceptions import InvalidArgument
from schemas.privileges import (
    ANY,
    BUILTIN_GROUPS,
    CLUSTER_LEVEL,
    COLLECTION,
    COLLECTION_LEVEL,
    DATABASE_LEVEL,
    GLOBAL,
    OBJECT_PRIVILEGES,
    OBJECT_TYPES,
    PRIVILEGES,
    is_builtin,
    level,
)
from schemas.rbac import DROPPED, Grant, PrivilegeGroup, RbacRecord, RbacRole, RbacUser, RoleMember
from walvus.databases import current_db
from walvus.passwords import hash_password, verify_password
from walvus.rbac import BUILTIN_ROLES, ROOT, RbacState

_USER = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")
_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,31}$")
MIN_PASSWORD, MAX_PASSWORD = 6, 256


class RbacDdl:
    """User, role, grant and privilege-group changes on a ``Walvus`` (its catalog, clock and site)."""

    def __init__(self, walvus: Any, root_password: str) -> None:
        self.w = walvus
        self._root_password = root_password
        self._root_initial: str | None = None  # hashed on first use

    @property
    def state(self) -> RbacState:
        return self.w.catalog.rbac  # type: ignore[no-any-return]

    # users -----------------------------------------------------------------------------------
    def password_hash(self, user: str) -> str | None:
        """The hash a login of ``user`` is checked against (root: its initial one until changed)."""
        record = self.state.user(user)
        if record is not None:
            return record.password_hash
        if user != ROOT:
            return None
        if self._root_initial is None:
            self._root_initial = hash_password(self._root_password)
        return self._root_initial

    def authenticate(self, user: str, password: str) -> bool:
        stored = self.password_hash(user)
        return stored is not None and verify_password(stored, password)

    def create_user(self, name: str, password: str, description: str = "") -> None:
        _check_user(name)
        _check_password(password)
        if self.password_hash(name) is not None:
            raise InvalidArgument(f"user already exists:{name}", user=name)
        self._publish(RbacUser(name, hash_password(password), description, created_ts=self.w.clock.now()))

    def update_password(self, name: str, old: str, new: str, *, skip_old_check: bool = False) -> None:
        _check_password(new)
        stored = self.password_hash(name)
        if stored is None:
            raise InvalidArgument(f"user not found: {name}", user=name)
        if not skip_old_check and not verify_password(stored, old):
            raise InvalidArgument(f"old password not correct for {name}", user=name)
        current = self.state.user(name) or RbacUser(name, stored, created_ts=self.w.clock.now())
        self._publish(replace(current, password_hash=hash_password(new)))

    def drop_user(self, name: str) -> None:
        if name == ROOT:
            raise InvalidArgument("root user cannot be deleted", user=name)
        record = self.state.user(name)
        if record is None:
            return
        gone: list[RbacRecord] = [replace(m, state=DROPPED) for m in self._memberships(user=name)]
        self._publish(*gone, replace(record, state=DROPPED))

    # roles -----------------------------------------------------------------------------------
    def create_role(self, name: str, description: str = "") -> None:
        _check_role(name)
        if self.state.role(name) is not None:
            raise InvalidArgument(f"role [{name}] already exists", role=name)
        self._publish(RbacRole(name, description, created_ts=self.w.clock.now()))

    def alter_role(self, name: str, description: str) -> None:
        if name in BUILTIN_ROLES:
            raise InvalidArgument(f"the role[{name}] is a default role, which can't be altered", role=name)
        self._publish(replace(self._require_role(name), description=description))

    def drop_role(self, name: str, force: bool = False) -> None:
        if name in BUILTIN_ROLES:
            raise InvalidArgument(f"the role[{name}] is a default role, which can't be dropped", role=name)
        role = self._require_role(name)
        grants = self.state.grants(name)
        if grants and not force:
            raise InvalidArgument(
                f"fail to drop the role[{name}] that it has privileges. Use REVOKE API to revoke privileges "
                "or drop it with force_drop=True",
                role=name,
            )
        gone = [replace(r, state=DROPPED) for r in [*grants, *self._memberships(role=name)]]
        self._publish(*gone, replace(role, state=DROPPED))

    def grant_role(self, user: str, role: str) -> None:
        self._require_user(user)
        self._require_role(role)
        if self.state.member(user, role) is None:
            self._publish(RoleMember(user, role))

    def revoke_role(self, user: str, role: str) -> None:
        self._require_user(user)
        self._require_role(role)
        member = self.state.member(user, role)
        if member is not None:
            self._publish(replace(member, state=DROPPED))

    # grants ----------------------------------------------------------------------------------
    def v1_grant(
        self, role: str, object_type: str, object_name: str, privilege: str, db: str, grantor: str
    ) -> Grant:
        self._require_role(role)
        if object_type not in OBJECT_TYPES:
            raise InvalidArgument(
                f"not found the object type[name: {object_type}], supported the object types: {list(OBJECT_TYPES)}"
            )
        if not object_name:
            raise InvalidArgument("the object name in the grant entity is empty")
        _check_object(object_name, db)
        if privilege not in OBJECT_PRIVILEGES[object_type] and self.state.group(privilege) is None:
            raise InvalidArgument(
                f"not found the privilege name[{privilege}] in object[{object_type}]", privilege=privilege
            )
        return Grant(role, object_type, object_name, db or current_db(), privilege, grantor)

    def v2_grant(self, role: str, privilege: str, db: str, collection: str, grantor: str) -> Grant:
        """A v2 grant: the privilege's level says what it applies to."""
        self._require_role(role)
        custom = self.state.group(privilege)
        if not is_builtin(privilege) and custom is None:
            raise InvalidArgument(f"not found the privilege name[{privilege}]", privilege=privilege)
        db, collection = db or current_db(), collection or ANY
        _check_object(collection, db)
        lvl = level(privilege)
        if privilege in BUILTIN_GROUPS and lvl == CLUSTER_LEVEL and (db != ANY or collection != ANY):
            raise InvalidArgument(
                f"dbName and collectionName should be * for the cluster level privilege: {privilege}"
            )
        if lvl in (CLUSTER_LEVEL, DATABASE_LEVEL) and collection != ANY:
            raise InvalidArgument(
                f"collectionName should be empty or * for the {lvl.lower()} level privilege: {privilege}"
            )
        if custom is not None:
            levels = {level(p) for p in custom.privileges}
            object_type = COLLECTION if levels <= {COLLECTION_LEVEL} else GLOBAL
        else:
            object_type = COLLECTION if lvl == COLLECTION_LEVEL else GLOBAL
        return Grant(role, object_type, collection, db, privilege, grantor)

    def grant(self, grant: Grant) -> None:
        if self.state.grant(grant.key) is None:
            self._publish(grant)

    def revoke(self, grant: Grant) -> None:
        existing = self.state.grant(grant.key)
        if existing is not None:
            self._publish(replace(existing, state=DROPPED))

    # privilege groups -------------------------------------------------------------------------
    def create_group(self, name: str) -> None:
        _check_role(name, "privilege group")
        if is_builtin(name):
            raise InvalidArgument(
                f"privilege group name [{name}] is defined by built in privileges or privilege groups in system"
            )
        if self.state.group(name) is not None:
            raise InvalidArgument(f"privilege group [{name}] already exists")
        self._publish(PrivilegeGroup(name))

    def drop_group(self, name: str) -> None:
        group = self.state.group(name)
        if group is None:
            return
        users = sorted({g.role for g in self.state.grants() if g.privilege == name})
        if users:
            raise InvalidArgument(
                f"privilege group [{name}] is used by role [{', '.join(users)}], Use REVOKE API to revoke it first"
            )
        self._publish(replace(group, state=DROPPED))

    def change_group(self, name: str, privileges: list[str], *, add: bool) -> None:
        group = self.state.group(name)
        if group is None:
            raise InvalidArgument(f"privilege group [{name}] does not exist")
        for p in privileges:
            if p not in PRIVILEGES:
                raise InvalidArgument(
                    f"privilege name [{p}] is not a valid privilege (groups cannot be nested)"
                )
        if add:
            merged = tuple(dict.fromkeys([*group.privileges, *privileges]))
        else:
            merged = tuple(p for p in group.privileges if p not in set(privileges))
        self._publish(replace(group, privileges=merged))

    # helpers ---------------------------------------------------------------------------------
    def _memberships(self, *, user: str | None = None, role: str | None = None) -> list[RoleMember]:
        if user is not None:
            return [m for r in self.state.roles_of(user) if (m := self.state.member(user, r)) is not None]
        assert role is not None
        return [m for u in self.state.members(role) if (m := self.state.member(u, role)) is not None]

    def _require_user(self, name: str) -> None:
        if self.password_hash(name) is None:
            raise InvalidArgument(f"not found the user[{name}], maybe the user isn't existed", user=name)

    def _require_role(self, name: str) -> RbacRole:
        role = self.state.role(name)
        if role is None:
            raise InvalidArgument(f"not found the role[{name}], maybe the role isn't existed", role=name)
        return role

    def _publish(self, *records: RbacRecord) -> None:
        self.w.catalog.publish_records([replace(r, origin=self.w.site) for r in records])


def _check_user(name: str) -> None:
    if not _USER.match(name or ""):
        raise InvalidArgument(
            f"invalid user name {name!r}: the first character must be a letter, the rest letters, digits, "
            "'_', '.' or '-', at most 32 characters",
            user=name,
        )


def _check_role(name: str, what: str = "role") -> None:
    if not _ROLE.match(name or ""):
        raise InvalidArgument(
            f"invalid {what} name {name!r}: the first character must be a letter or '_', the rest letters, "
            "digits, '_' or '-', at most 32 characters"
        )


def _check_object(name: str, db: str) -> None:
    """Object and database names of a grant: no ``/`` or ``:`` (they separate a grant's key)."""
    for what, value in (("object name", name), ("database name", db)):
        if "/" in value or ":" in value:
            raise InvalidArgument(f"invalid {what} in the grant: {value!r} (no '/' or ':')")


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidArgument(
            f"invalid password: the length of password must be at least {MIN_PASSWORD} and at most "
            f"{MAX_PASSWORD} characters"
        )
