"""People's passwords: the policy a new one must meet, argon2id hashes (argon2-cffi's RFC 9106 parameters), and
generated ones. A password is never logged, printed (except a generated one, once) or stored in clear."""

from __future__ import annotations

import functools
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.errors import Busy, InvalidRequest

PASSWORD_MIN_CHARS: Final = 12
# Far above any passphrase; bounds the work one request can ask of the hasher.
PASSWORD_MAX_CHARS: Final = 1024
GENERATED_PASSWORD_BYTES: Final = 18  # 24 URL-safe characters, 144 bits

# Parameters only, no state: safe to share between threads.
_HASHER: Final = PasswordHasher()

# One hash or check costs ~50 ms of a core and 64 MiB (RFC 9106's second recommended parameters): a burst of logins
# must not take every core and gigabytes of memory, and starve the other routes. A few run at once in a process; the
# others wait a little, then are told to come back (503), which is not counted as a failed login.
CONCURRENT_HASHES: Final = 2
HASH_WAIT_S: Final = 3.0
BUSY_RETRY_AFTER_S: Final = 2.0
_HASH_SLOTS: Final = threading.BoundedSemaphore(CONCURRENT_HASHES)


@contextmanager
def hashing_slot(*, wait_s: float | None = None) -> Iterator[None]:
    """Hold one of the process's password-hashing slots; Busy when none frees up within `wait_s` (HASH_WAIT_S)."""
    if not _HASH_SLOTS.acquire(timeout=HASH_WAIT_S if wait_s is None else wait_s):
        raise Busy(
            "the center is busy checking other passwords: try again in a few seconds",
            retry_after_s=BUSY_RETRY_AFTER_S,
        )
    try:
        yield
    finally:
        _HASH_SLOTS.release()


class WeakPassword(InvalidRequest):
    """A new password that does not meet the policy; the message says which rule."""


def check_password_policy(password: str, *, username: str) -> None:
    """Raise WeakPassword unless `password` has 12 to 1024 characters and is not the username (in any case)."""
    if len(password) < PASSWORD_MIN_CHARS:
        raise WeakPassword(f"a password needs at least {PASSWORD_MIN_CHARS} characters")
    if len(password) > PASSWORD_MAX_CHARS:
        raise WeakPassword(f"a password has at most {PASSWORD_MAX_CHARS} characters")
    if password.strip().casefold() == username.strip().casefold():
        raise WeakPassword("a password must not be the username")


def hash_password(password: str) -> str:
    """The argon2id hash of `password` (Busy when the process's hashing slots stay taken)."""
    with hashing_slot():
        return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` is the one hashed; False for a wrong password or an unreadable hash (Busy when the
    process's hashing slots stay taken: nothing was checked)."""
    with hashing_slot():
        try:
            return _HASHER.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's (it is replaced at the next login)."""
    return _HASHER.check_needs_rehash(password_hash)


@functools.cache
def _unknown_user_hash() -> str:
    return hash_password(secrets.token_urlsafe(GENERATED_PASSWORD_BYTES))


def verify_for_unknown_user(password: str) -> None:
    """Spend the time a real verification takes, so that response times do not tell which usernames exist."""
    verify_password(_unknown_user_hash(), password)


def generate_password() -> str:
    """A random password that meets the policy for any username."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
