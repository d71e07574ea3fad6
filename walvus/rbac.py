"""Users, roles and grants: the state replayed from the catalog topic, and the checks on it.

``RbacState`` is what every process's catalog holds (``CatalogView.rbac``); ``allowed`` answers
"may this user use this privilege on this object", with Milvus's rules:

- ``root`` may do anything, and so may every member of the built-in role ``admin``;
- every user holds the built-in role ``public``, which by default may describe any collection
  (Global ``DescribeCollection``) and its indexes (Collection ``IndexDetail``), as in Milvus;
- a grant applies in its database (``*``: every database) to its object (``*``: every object),
  with its privilege, the members of its group (built-in or custom), the privileges ``RELATED``
  to them, or everything for ``All``.

Until ``root`` changes its password there is no ``root`` record: it logs in with the configured
initial password (``WALVUS_ROOT_PASSWORD``), so a fresh deployment needs no write at start.
"""

from __future__ import annotations

from schemas.privileges import ALL, ANY, BUILTIN_GROUPS, COLLECTION, GLOBAL, RELATED
from schemas.rbac import Grant, PrivilegeGroup, RbacRecord, RbacRole, RbacUser, RoleMember

ROOT, ADMIN, PUBLIC = "root", "admin", "public"
BUILTIN_ROLES = (ADMIN, PUBLIC)
# Milvus's default grants of the public role (proxy.enablePublicPrivilege)
PUBLIC_DEFAULTS = (
    Grant(PUBLIC, GLOBAL, ANY, ANY, "DescribeCollection", grantor=ROOT),
    Grant(PUBLIC, COLLECTION, ANY, ANY, "IndexDetail", grantor=ROOT),
)


class RbacState:
    """The access-control records applied so far, by key; read by the gateway's checks."""

    def __init__(self) -> None:
        self._records: dict[str, RbacRecord] = {r.key: r for r in PUBLIC_DEFAULTS}

    def apply(self, key: str, record: RbacRecord | None) -> None:
        if record is None:
            self._records.pop(key, None)
        else:
            self._records[key] = record

    def _active(self, cls: type) -> list:
        return [r for r in list(self._records.values()) if isinstance(r, cls) and r.active]

    # reading ---------------------------------------------------------------------------------
    def user(self, name: str) -> RbacUser | None:
        r = self._records.get(f"user:{name}")
        return r if isinstance(r, RbacUser) and r.active else None

    def user_names(self, root_exists: bool = True) -> list[str]:
        names = {u.name for u in self._active(RbacUser)}
        if root_exists:
            names.add(ROOT)
        return sorted(names)

    def role(self, name: str) -> RbacRole | None:
        if name in BUILTIN_ROLES:
            return RbacRole(name)
        r = self._records.get(f"role:{name}")
        return r if isinstance(r, RbacRole) and r.active else None

    def roles(self) -> list[RbacRole]:
        custom = sorted(self._active(RbacRole), key=lambda r: (r.created_ts, r.name))
        return [RbacRole(ADMIN), RbacRole(PUBLIC), *custom]

    def roles_of(self, user: str) -> list[str]:
        return sorted(m.role for m in self._active(RoleMember) if m.user == user)

    def members(self, role: str) -> list[str]:
        return sorted(m.user for m in self._active(RoleMember) if m.role == role)

    def member(self, user: str, role: str) -> RoleMember | None:
        r = self._records.get(f"member:{user}/{role}")
        return r if isinstance(r, RoleMember) and r.active else None

    def grants(self, role: str | None = None) -> list[Grant]:
        return [g for g in self._active(Grant) if role is None or g.role == role]

    def grant(self, key: str) -> Grant | None:
        r = self._records.get(key)
        return r if isinstance(r, Grant) and r.active else None

    def group(self, name: str) -> PrivilegeGroup | None:
        r = self._records.get(f"privgroup:{name}")
        return r if isinstance(r, PrivilegeGroup) and r.active else None

    def groups(self) -> list[PrivilegeGroup]:
        return sorted(self._active(PrivilegeGroup), key=lambda g: g.name)

    # checking --------------------------------------------------------------------------------
    def expand(self, privilege: str) -> frozenset[str]:
        """The privileges a grant of ``privilege`` gives (a group's members and their related ones)."""
        members = BUILTIN_GROUPS.get(privilege)
        if members is None:
            custom = self.group(privilege)
            members = custom.privileges if custom is not None else (privilege,)
        out = set(members)
        for p in members:
            out.update(RELATED.get(p, ()))
        return frozenset(out)

    def is_superuser(self, user: str) -> bool:
        return user == ROOT or self.member(user, ADMIN) is not None

    def allowed(self, user: str, privilege: str, object_name: str, db: str) -> bool:
        """Whether ``user`` holds ``privilege`` on the object ``object_name`` (``*`` for Global
        objects) in database ``db``."""
        if self.is_superuser(user):
            return True
        roles = {PUBLIC, *self.roles_of(user)}
        for g in self._active(Grant):
            if g.role not in roles or g.db_name not in (db, ANY) or g.object_name not in (object_name, ANY):
                continue
            if g.privilege == ALL or privilege in self.expand(g.privilege):
                return True
        return False

    def visible_names(self, user: str, db: str) -> set[str] | None:
        """The object names ``user``'s grants name in ``db``; None when one names every object."""
        if self.is_superuser(user):
            return None
        roles = {PUBLIC, *self.roles_of(user)}
        names: set[str] = set()
        for g in self._active(Grant):
            if g.role not in roles or g.db_name not in (db, ANY) or g in PUBLIC_DEFAULTS:
                continue
            if g.object_name == ANY:
                return None
            names.add(g.object_name)
        return names

    def visible_databases(self, user: str) -> set[str] | None:
        """The databases ``user``'s grants name; None when one names every database."""
        if self.is_superuser(user):
            return None
        roles = {PUBLIC, *self.roles_of(user)}
        dbs: set[str] = set()
        for g in self._active(Grant):
            if g.role in roles and g not in PUBLIC_DEFAULTS:
                if g.db_name == ANY:
                    return None
                dbs.add(g.db_name)
        return dbs
