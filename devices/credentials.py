"""Device secrets: generated here, shown once, kept only as Mosquitto's own PBKDF2-SHA512 hash (`$7$…`).

The registry stores the same hash the broker's password file needs, so the file can be rendered from the
database at any time without ever holding a secret. The secrets are 192 random bits, so key stretching adds
nothing against guessing; Mosquitto's default of 101 iterations keeps each broker-side check cheap when a
province's devices reconnect at once.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Final

SECRET_BYTES: Final = 24
HASH_ITERATIONS: Final = 101
SALT_BYTES: Final = 12
_PREFIX: Final = "$7$"


def generate_secret() -> str:
    """A new random device secret (32 URL-safe characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str, *, iterations: int = HASH_ITERATIONS, salt: bytes | None = None) -> str:
    """`$7$<iterations>$<base64 salt>$<base64 sha512>`: the format of mosquitto_passwd (Mosquitto 2.0)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"{_PREFIX}{iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
