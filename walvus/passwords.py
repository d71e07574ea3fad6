"""Password hashing: argon2id through argon2-cffi.

Parameters are OWASP's password-storage minimum for argon2id (19 MiB, 2 passes, 1 lane): a
login or password change costs tens of milliseconds, not the seconds argon2-cffi's defaults
(64 MiB, 3 passes, 4 lanes) took on a busy two-core machine.

Only hashes are stored (``RbacUser.password_hash``); a hash carries its own salt and parameters,
so a later change of parameters still verifies old hashes.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
