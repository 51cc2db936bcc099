"""Write the first Mosquitto dynamic-security file of the production stack, once.

Run by the compose service `mosquitto-init` before the broker starts. When the file already
exists it is left alone (clients and roles added later with `mosquitto_ctrl dynsec ...` are kept).

It creates:
  - client `admin` (role `admin`): administers the plugin over `$CONTROL/dynamic-security/#`,
    exactly what `mosquitto_ctrl dynsec init FILE admin` makes;
  - client `$IOC_MQTT_USERNAME` (default `ioc-center`, role `ioc-center`): the center's services,
    full access below `ioc/v1/#`, shared subscriptions `$share/+/ioc/v1/#`, and read access to `$SYS/#`;
  - role `ioc-device` (no client): what a device may do; give it to device clients you create.

Passwords come from the environment: MOSQUITTO_ADMIN_PASSWORD and IOC_MQTT_PASSWORD.
Hashes are Mosquitto 2.0's: PBKDF2-HMAC-SHA512, 12-byte salt, 101 iterations, base64.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

ITERATIONS = 101
TOPIC_ROOT = "ioc/v1"


def _client(username: str, password: str, text_name: str, role: str) -> dict[str, Any]:
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return {
        "username": username,
        "textName": text_name,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": ITERATIONS,
        "roles": [{"rolename": role}],
    }


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def build_config(admin_password: str, center_username: str, center_password: str) -> dict[str, Any]:
    """The whole dynamic-security document."""
    control = "$CONTROL/dynamic-security/#"
    admin_acls = [
        _acl("publishClientSend", control),
        _acl("publishClientReceive", control),
        _acl("subscribePattern", control),
        _acl("publishClientReceive", "$SYS/#"),
        _acl("subscribePattern", "$SYS/#"),
        _acl("publishClientReceive", "#"),
        _acl("subscribePattern", "#"),
        _acl("unsubscribePattern", "#"),
    ]
    center_acls = [
        _acl("publishClientSend", f"{TOPIC_ROOT}/#"),
        _acl("publishClientReceive", f"{TOPIC_ROOT}/#"),
        _acl("subscribePattern", f"{TOPIC_ROOT}/#"),
        _acl("unsubscribePattern", f"{TOPIC_ROOT}/#"),
        # Mosquitto 2.0 checks a shared subscription's ACL on the whole `$share/{group}/...` filter.
        _acl("subscribePattern", f"$share/+/{TOPIC_ROOT}/#"),
        _acl("unsubscribePattern", f"$share/+/{TOPIC_ROOT}/#"),
        _acl("publishClientReceive", "$SYS/#"),
        _acl("subscribePattern", "$SYS/#"),
        _acl("unsubscribePattern", "$SYS/#"),
    ]
    device_acls = [
        _acl("publishClientSend", f"{TOPIC_ROOT}/+/+/+/telemetry"),
        _acl("publishClientSend", f"{TOPIC_ROOT}/+/+/+/telemetry/senml"),
        _acl("publishClientSend", f"{TOPIC_ROOT}/+/+/+/status"),
        _acl("publishClientSend", f"{TOPIC_ROOT}/+/+/+/cmd/ack"),
        _acl("subscribePattern", f"{TOPIC_ROOT}/+/+/+/cmd"),
        _acl("publishClientReceive", f"{TOPIC_ROOT}/+/+/+/cmd"),
        _acl("unsubscribePattern", f"{TOPIC_ROOT}/+/+/+/cmd"),
    ]
    return {
        "clients": [
            _client("admin", admin_password, "Dynsec admin user", "admin"),
            _client(center_username, center_password, "ioc center services", "ioc-center"),
        ],
        "groups": [],
        "roles": [
            {"rolename": "admin", "acls": admin_acls},
            {"rolename": "ioc-center", "textname": "ioc ingest, analytics and API", "acls": center_acls},
            {"rolename": "ioc-device", "textname": "a field device", "acls": device_acls},
        ],
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=Path("/mosquitto/config/dynamic-security.json"))
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = parser.parse_args(argv)
    path: Path = args.file

    if path.exists() and not args.force:
        print(f"dynsec-init: {path} exists, left as it is")
        return 0
    admin_password = os.environ.get("MOSQUITTO_ADMIN_PASSWORD", "")
    center_password = os.environ.get("IOC_MQTT_PASSWORD", "")
    center_username = os.environ.get("IOC_MQTT_USERNAME", "ioc-center")
    if not admin_password or not center_password:
        print("dynsec-init: set MOSQUITTO_ADMIN_PASSWORD and IOC_MQTT_PASSWORD", file=sys.stderr)
        return 2

    document = json.dumps(build_config(admin_password, center_username, center_password), indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".dynsec-", delete=False) as tmp:
        tmp.write(document + "\n")
    Path(tmp.name).chmod(0o600)
    Path(tmp.name).replace(path)
    print(f"dynsec-init: wrote {path} (clients admin, {center_username}; roles admin, ioc-center, ioc-device)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
