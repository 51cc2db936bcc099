"""`ioc bench access`: broker access-control mechanisms measured on a private Mosquitto.

For the password file with `%u` pattern ACLs (what `devices.access` writes) and, with `--per-user`, for
per-device `user` blocks in the ACL file: broker start-up time, SIGHUP reload time (until a new connection is
served), and whether a connected device removed from the password file is disconnected by the reload.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.access import render_acl, render_password_file
from devices.credentials import hash_secret
from embedded.runtime import EmbeddedMosquitto

SECRET = secrets.token_urlsafe(24)


class _Probe:
    def __init__(self, port: int, username: str, password: str) -> None:
        self.connected = threading.Event()
        self.dropped = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=username)
        self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: None if rc.is_failure else self.connected.set()
        self.client.on_disconnect = lambda c, u, f, rc, p: self.dropped.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _write(mq: EmbeddedMosquitto, devices: list[str], digest: str, *, per_user: bool) -> None:
    center_hash = hash_secret(mq.center_password)
    mq.password_file.write_text(render_password_file("ioc-center", center_hash, ((d, digest) for d in devices)))
    acl = render_acl("ioc-center")
    if per_user:
        acl = "\n".join(
            [acl.split("\n\n")[-1]]
            + [
                f"user {d}\ntopic write ioc/v1/can-tho/agriculture/{d}/telemetry\n"
                f"topic write ioc/v1/can-tho/agriculture/{d}/status\ntopic read ioc/v1/can-tho/agriculture/{d}/cmd"
                for d in devices
            ]
        )
    mq.acl_file.write_text(acl + "\n")


def measure(count: int, *, per_user: bool) -> dict[str, object]:
    digest = hash_secret(SECRET)  # one hash for all: the broker's cost does not depend on it
    devices = [f"bench-{i:06d}" for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mq"
        mq = EmbeddedMosquitto(root, auth=True)
        mq.root.mkdir(parents=True)
        mq.password_file.touch(mode=0o644)
        mq.acl_file.touch(mode=0o644)
        Path(tmp).chmod(0o755)
        _write(mq, devices, digest, per_user=per_user)
        started = time.monotonic()
        with mq:
            victim = _Probe(mq.port, devices[-1], SECRET)
            assert victim.connected.wait(600), "device did not connect"
            startup_s = time.monotonic() - started
            _write(mq, [*devices[:-1], "bench-new"], digest, per_user=per_user)
            reload_started = time.monotonic()
            mq.reload()
            fresh = _Probe(mq.port, "bench-new", SECRET)
            assert fresh.connected.wait(600), "new device did not connect after reload"
            reload_s = time.monotonic() - reload_started
            cut_off = victim.dropped.wait(5)
            fresh.close()
            victim.close()
    return {
        "mechanism": "per-user ACL blocks" if per_user else "password file + %u patterns",
        "devices": count,
        "startup_s": round(startup_s, 2),
        "reload_s": round(reload_s, 2),
        "removed_device_disconnected": cut_off,
    }
