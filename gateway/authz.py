"""The single place where a call is checked against its caller's privileges (authorization enabled).

``Guard.check`` runs before every handler (``gateway.service``): it looks the RPC up in
``gateway.privileges.RULES``, resolves the object (an alias to its collection) and raises
``PermissionDenied`` unless one of the caller's roles holds the privilege there, so a refused
call changes nothing and reads nothing. As in Milvus, a user may always change its own password,
describe itself, and list the grants of a role it holds. ``Guard.filter`` then trims the answers of
the open listing RPCs to what the caller may see.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.privileges import OPEN, RULES
from schemas.exceptions import PermissionDenied
from schemas.privileges import COLLECTION
from walvus.rbac import RbacState
from walvus.write_api import WriteApi

log = logging.getLogger(__name__)


class Guard:
    def __init__(self, walvus: WriteApi) -> None:
        self.w = walvus

    @property
    def state(self) -> RbacState:
        return self.w.catalog.rbac  # type: ignore[no-any-return]

    def check(self, method: str, request: Any, user: str, db: str) -> None:
        rule = RULES.get(method)
        if rule is None:
            if method in OPEN:
                return
            raise PermissionDenied(method, user, db)  # an RPC nobody classified is nobody's
        if self._own(method, request, user):
            return
        for name in rule.object_names(request):
            if rule.object_type == COLLECTION:
                info = self.w.catalog.get(name)  # an alias is checked as its collection
                if info is not None:
                    name = info.name
            if not self.state.allowed(user, rule.privilege, name, db):
                log.info("permission denied method=%s user=%s db=%s object=%s", method, user, db, name)
                raise PermissionDenied(rule.privilege, user, db)

    def _own(self, method: str, request: Any, user: str) -> bool:
        """Milvus lets every user update and describe itself, and read the grants of its roles."""
        if method == "UpdateCredential":
            return bool(request.username == user)
        if method == "SelectUser":
            return bool(request.user.name == user)
        if method == "SelectGrant":
            return request.entity.role.name in self.state.roles_of(user)
        return False

    def filter(self, method: str, response: Any, user: str, db: str) -> Any:
        """ShowCollections and ListDatabases answer only what the caller's grants name, unless it
        may list them all (the ShowCollections / ListDatabases privilege, or a grant on ``*``)."""
        if method == "ShowCollections" and not self.state.allowed(user, "ShowCollections", "*", db):
            names = self.state.visible_names(user, db)
            if names is not None:
                keep = [i for i, n in enumerate(response.collection_names) if n in names]
                _keep_rows(response, keep, ("collection_names", "collection_ids", "created_timestamps",
                    "created_utc_timestamps", "inMemory_percentages", "query_service_available", "shards_num"))  # fmt: skip
        elif method == "ListDatabases" and not self.state.allowed(user, "ListDatabases", "*", db):
            dbs = self.state.visible_databases(user)
            if dbs is not None:
                keep = [i for i, n in enumerate(response.db_names) if n in dbs]
                _keep_rows(response, keep, ("db_names", "db_ids", "created_timestamp"))
        return response


def _keep_rows(response: Any, keep: list[int], fields: tuple[str, ...]) -> None:
    """Keep rows ``keep`` of the parallel repeated ``fields`` (those as long as the first)."""
    rows = len(getattr(response, fields[0]))
    for f in fields:
        values = list(getattr(response, f))
        if len(values) != rows:
            continue
        del getattr(response, f)[:]
        getattr(response, f).extend(values[i] for i in keep)
