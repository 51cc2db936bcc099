"""An independent check of Mosquitto's `$7$` password hashes (what `devices.credentials.hash_secret` writes).

In production the broker, not ioc, checks device secrets; the tests check hashes with this separate reading of
the format, so a slip in `hash_secret` cannot be mirrored by the code that verifies it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


def verify_secret(secret: str, hashed: str) -> bool:
    """True when `secret` matches `hashed` (`$7$<iterations>$<base64 salt>$<base64 sha512>`); False for a wrong
    secret or a malformed hash."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return hmac.compare_digest(digest, expected)
