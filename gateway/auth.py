"""Who is calling: the ``authorization`` header pymilvus sends (base64 of ``user:password``).

``caller()`` is the user of the request being served (a context variable the servicer sets
around every handler, as it does the database). ``FixedUsersInterceptor`` accepts the fixed
``WALVUS_USERS`` list (without authorization); ``RbacAuthInterceptor`` logs users in against
the stored users (``walvus.rbac_ddl.RbacDdl.authenticate``) when authorization is enabled; a
verified header is remembered with the password hash it matched, so a password change or a
dropped user takes effect on the next call, and a correct login costs one argon2 check.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import grpc

log = logging.getLogger(__name__)
_CALLER: ContextVar[str] = ContextVar("walvus_caller", default="")
CACHE_SIZE = 4096


def caller() -> str:
    return _CALLER.get()


@contextmanager
def as_caller(user: str) -> Iterator[str]:
    token = _CALLER.set(user)
    try:
        yield user
    finally:
        _CALLER.reset(token)


def credentials(metadata: Any) -> tuple[str, str] | None:
    """``(user, password)`` from the ``authorization`` header, or None when absent or unreadable."""
    for key, value in metadata or ():
        if key != "authorization":
            continue
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return (user, password) if sep else None
    return None


def header_user(metadata: Any) -> str:
    creds = credentials(metadata)
    return creds[0] if creds else ""


def parse_users(spec: str) -> set[str]:
    """``"u:p,u2:p2"`` as the set of accepted ``user:password`` strings."""
    users = set()
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if ":" not in item:
            raise ValueError("gateway users must be user:password pairs separated by commas")
        users.add(item)
    return users


class LoginInterceptor(grpc.ServerInterceptor):
    """Lets a call through when ``_allowed`` accepts its metadata; otherwise answers it with
    ``refusal(method)``: the RPC's normal response carrying Milvus's auth-failure status, so
    pymilvus raises a ``MilvusException`` that says what is wrong."""

    def __init__(self, refusal: Callable[[str], grpc.RpcMethodHandler]) -> None:
        self._refusal = refusal

    def _allowed(self, metadata: Any) -> bool:
        raise NotImplementedError

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if self._allowed(details.invocation_metadata):
            return continuation(details)
        log.warning("authentication failed method=%s", details.method)
        return self._refusal(details.method)


class FixedUsersInterceptor(LoginInterceptor):
    """Logins of the fixed ``WALVUS_USERS`` list (``user:password`` strings), without authorization."""

    def __init__(self, users: set[str], refusal: Callable[[str], grpc.RpcMethodHandler]) -> None:
        super().__init__(refusal)
        self._users = users
        self._accepted: set[str] = set()  # header values already verified

    def _allowed(self, metadata: Any) -> bool:
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if header is None:
            return False
        key = header.decode("ascii", "replace") if isinstance(header, bytes) else header
        if key in self._accepted:
            return True
        creds = credentials(metadata)
        if creds is None or f"{creds[0]}:{creds[1]}" not in self._users:
            return False
        self._accepted.add(key)
        return True


class RbacAuthInterceptor(LoginInterceptor):
    """Refuses every call without a valid login of a stored user (or root's initial password)."""

    def __init__(self, rbac: Any, refusal: Callable[[str], grpc.RpcMethodHandler]) -> None:
        super().__init__(refusal)
        self._rbac = rbac
        self._verified: dict[str, str] = {}  # header value -> the hash it was verified against
        self._lock = threading.Lock()

    def verify(self, login: str) -> bool:
        """``user:password`` from another front door (the REST API), checked as a header is."""
        header = base64.b64encode(login.encode()).decode("ascii")
        return self._allowed((("authorization", header),))

    def _allowed(self, metadata: Any) -> bool:
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        creds = credentials(metadata)
        if header is None or creds is None:
            return False
        key = header.decode("ascii", "replace") if isinstance(header, bytes) else header
        stored = self._rbac.password_hash(creds[0])
        if stored is None:
            return False
        if self._verified.get(key) == stored:
            return True
        if not self._rbac.authenticate(*creds):
            return False
        with self._lock:
            if len(self._verified) >= CACHE_SIZE:
                self._verified.clear()
            self._verified[key] = stored
        return True
