"""Device secrets and the broker access files: pure functions, checked against Mosquitto's own tool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from api.principal import Principal
from devices.access import DEVICE_ACL_PATTERNS, render_acl, render_password_file
from devices.credentials import generate_secret, hash_secret
from store.scope import EVERYTHING
from tests.mosquitto_passwords import verify_secret


def test_secrets_are_random_and_long() -> None:
    secrets = {generate_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(s) == 32 for s in secrets)


def test_hash_verifies_its_secret_only() -> None:
    secret = generate_secret()
    hashed = hash_secret(secret)
    assert hashed.startswith("$7$101$")
    assert secret not in hashed
    assert verify_secret(secret, hashed)
    assert not verify_secret(secret + "x", hashed)
    assert hash_secret(secret) != hashed  # salted
    assert not verify_secret(secret, "$6$garbage")
    assert not verify_secret(secret, "$7$101$!!$!!")


def test_hash_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """The format Mosquitto reads: its own tool's hash verifies with our function, and ours has its shape."""
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd not installed")
    path = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(path), "dev-1", "s3cret-value"], check=True)
    user, _, theirs = path.read_text().strip().partition(":")
    assert user == "dev-1"
    assert verify_secret("s3cret-value", theirs)
    ours = hash_secret("s3cret-value")
    assert [len(p) for p in ours.split("$")[:3]] == [len(p) for p in theirs.split("$")[:3]]
    assert len(ours) == len(theirs)


def test_access_files_give_devices_only_their_own_topics() -> None:
    acl = render_acl("ioc-center")
    assert "pattern write ioc/v1/+/+/%u/telemetry" in acl
    assert "pattern read ioc/v1/+/+/%u/cmd" in acl
    assert all(line in acl for line in DEVICE_ACL_PATTERNS)
    assert not any("#" in p for p in DEVICE_ACL_PATTERNS)
    assert acl.index("user ioc-center") > max(acl.index(p) for p in DEVICE_ACL_PATTERNS)
    pw = render_password_file("ioc-center", "$7$c", [("dev-1", "$7$a"), ("ioc-center", "$7$evil"), ("dev-2", "$7$b")])
    assert pw.splitlines() == ["ioc-center:$7$c", "dev-1:$7$a", "dev-2:$7$b"]


def test_roles_are_ordered() -> None:
    assert Principal(kind="key", id=1, name="a", role="admin", scope=EVERYTHING).may("operator")
    assert Principal(kind="key", id=1, name="o", role="operator", scope=EVERYTHING).may("viewer")
    assert not Principal(kind="key", id=1, name="v", role="viewer", scope=EVERYTHING).may("operator")
    assert not Principal(kind="key", id=1, name="o", role="operator", scope=EVERYTHING).may("admin")
