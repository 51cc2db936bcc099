"""Random bearer secrets (192 bits) and their SHA-256 digests: no stretching is needed for random secrets."""

from __future__ import annotations

import hashlib
import secrets
from typing import Final

KEY_PREFIX: Final = "ioc_k_"
ACCESS_PREFIX: Final = "ioc_a_"
REFRESH_PREFIX: Final = "ioc_r_"


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
