"""Admin routes through the real API: /users (list, create, read, change, reset password) and /keys (list, create
with the secret shown once, revoke); only admins, and an admin scoped to a province reaches only users and keys
within it; every write audited with the acting principal and address; no secret in any list, read or log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from api.access.users import create_user
from store.scope import EVERYTHING, Scope
from tests.integration.conftest import ApiServer, ScratchDatabase

PASSWORD = "quản-trị-viên-2026"


def _make_user(database: ScratchDatabase, username: str, *, role: str = "viewer", scope: Scope = EVERYTHING) -> None:
    with psycopg.connect(database.url) as conn:
        create_user(conn, username=username, password=PASSWORD, role=role, scope=scope, actor="test")
        conn.commit()


def _login(client: httpx.Client, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["detail"])


def _audit(database: ScratchDatabase, action: str) -> list[tuple[Any, ...]]:
    with database.connect() as conn:
        return conn.execute(
            "SELECT actor, target, details, address FROM audit_log WHERE action = %s ORDER BY id", (action,)
        ).fetchall()


def test_admins_create_change_and_reset_users_and_every_write_is_audited(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    _make_user(database, "root", role="admin")
    _make_user(database, "op", role="operator")
    with api() as client:
        admin, operator = _login(client, "root"), _login(client, "op")
        body = {"username": "Thu.Tran", "display_name": "Trần Thu", "role": "operator", "provinces": ["can-tho"]}
        assert client.post("/users", json=body).status_code == 401
        assert "needs role admin; user:op is operator" in _detail(
            client.post("/users", json=body, headers=operator), 403
        )
        assert client.get("/users", headers=operator).status_code == 403

        created = client.post("/users", json=body, headers=admin)
        assert created.status_code == 201, created.text
        user = created.json()
        generated = user.pop("password")
        assert len(generated) == 24
        assert (user["username"], user["role"], user["provinces"], user["sectors"]) == (
            "thu.tran",
            "operator",
            ["can-tho"],
            None,
        )
        assert user["disabled"] is False
        assert client.get("/auth/me", headers=_login(client, "thu.tran", generated)).json()["provinces"] == ["can-tho"]

        assert "exists already" in _detail(client.post("/users", json=body, headers=admin), 409)
        weak = client.post("/users", json={"username": "weak", "password": "weak"}, headers=admin)
        assert _detail(weak, 422) == "a password needs at least 12 characters"
        same = client.post("/users", json={"username": "samename1234", "password": "SameName1234"}, headers=admin)
        assert _detail(same, 422) == "a password must not be the username"
        bad_province = client.post("/users", json={"username": "x", "provinces": ["sai-gon"]}, headers=admin)
        assert _detail(bad_province, 422).startswith("unknown province 'sai-gon'")
        bad_sector = client.post("/users", json={"username": "x", "sectors": ["mining"]}, headers=admin)
        assert _detail(bad_sector, 422).startswith("unknown sector 'mining'")
        bad_name = client.post("/users", json={"username": "x y"}, headers=admin)
        assert _detail(bad_name, 422).startswith("a username has 1 to 64 characters")

        changed = client.patch(
            "/users/thu.tran", json={"role": "viewer", "sectors": ["energy"], "display_name": "Thu"}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["role"], changed.json()["provinces"], changed.json()["sectors"]) == (
            "viewer",
            ["can-tho"],
            ["energy"],
        )
        every = client.patch("/users/thu.tran", json={"provinces": None}, headers=admin)
        assert every.json()["provinces"] is None
        assert client.patch("/users/nobody", json={"role": "admin"}, headers=admin).status_code == 404
        disabled = client.patch("/users/thu.tran", json={"disabled": True}, headers=admin)
        assert disabled.json()["disabled"] is True
        assert disabled.json()["disabled_at"] is not None
        assert "cannot disable yourself" in _detail(
            client.patch("/users/root", json={"disabled": True}, headers=admin), 403
        )

        reset = client.post("/users/thu.tran/password", json={"password": "mật-khẩu-đặt-lại"}, headers=admin)
        assert reset.status_code == 200, reset.text
        assert reset.json()["password"] is None
        client.patch("/users/thu.tran", json={"disabled": False}, headers=admin)
        assert client.get("/auth/me", headers=_login(client, "thu.tran", "mật-khẩu-đặt-lại")).status_code == 200
        generated_reset = client.post("/users/thu.tran/password", json={}, headers=admin).json()["password"]
        assert client.get("/auth/me", headers=_login(client, "thu.tran", generated_reset)).status_code == 200

        listed = client.get("/users", headers=admin)
        assert [u["username"] for u in listed.json()] == ["op", "root", "thu.tran"]
        assert client.get("/users/THU.TRAN", headers=admin).json()["display_name"] == "Thu"

    assert [(a, t, addr) for a, t, _, addr in _audit(database, "user.create")] == [
        ("test", "user:root", None),
        ("test", "user:op", None),
        ("user:root", "user:thu.tran", "127.0.0.1"),
    ]
    updates = _audit(database, "user.update")
    assert updates[0][2]["role"] == {"from": "operator", "to": "viewer"}
    assert updates[0][2]["sessions_revoked"] == 1
    assert [row[0] for row in _audit(database, "user.disable")] == ["user:root"]
    assert [row[0] for row in _audit(database, "user.enable")] == ["user:root"]
    assert [(row[0], row[3]) for row in _audit(database, "user.password")] == [("user:root", "127.0.0.1")] * 2


def test_keys_are_shown_once_scoped_and_revoked_at_once(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    _make_user(database, "root", role="admin")
    with api() as client:
        admin = _login(client, "root")
        created = client.post(
            "/keys",
            json={"name": "national-center", "provinces": ["ha-noi", "hue"], "sectors": ["energy"], "days": 30},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        assert secret.startswith("ioc_k_")
        assert created.json()["created_by"] == "user:root"
        key = {"Authorization": f"Bearer {secret}"}
        me = client.get("/auth/me", headers=key).json()
        assert (me["kind"], me["name"], me["role"], me["provinces"], me["sectors"]) == (
            "key",
            "national-center",
            "viewer",
            ["ha-noi", "hue"],
            ["energy"],
        )
        assert client.post("/auth/logout", headers=key).status_code == 422
        assert client.get("/keys", headers=key).status_code == 403

        assert "exists already" in _detail(client.post("/keys", json={"name": "national-center"}, headers=admin), 409)
        assert client.post("/keys", json={"name": "x", "days": 731}, headers=admin).status_code == 422
        assert client.post("/keys", json={"name": "bad name"}, headers=admin).status_code == 422
        unknown = client.post("/keys", json={"name": "x", "provinces": ["sai-gon"]}, headers=admin)
        assert _detail(unknown, 422).startswith("unknown province 'sai-gon'")

        listed = client.get("/keys", headers=admin).json()
        assert [k["name"] for k in listed] == ["national-center"]
        assert listed[0]["last_used_at"] is not None
        revoked = client.delete("/keys/national-center", headers=admin)
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        assert _detail(client.get("/auth/me", headers=key), 401) == "API key expired or revoked"
        assert client.delete("/keys/national-center", headers=admin).status_code == 404

    assert [(a, t, addr) for a, t, _, addr in _audit(database, "key.create")] == [
        ("user:root", "key:national-center", "127.0.0.1")
    ]
    assert [(a, t, addr) for a, t, _, addr in _audit(database, "key.revoke")] == [
        ("user:root", "key:national-center", "127.0.0.1")
    ]


def test_an_admin_scoped_to_one_province_manages_only_users_and_keys_within_it(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    _make_user(database, "root", role="admin")
    _make_user(database, "tho.admin", role="admin", scope=Scope.of(provinces=["can-tho"]))
    _make_user(database, "hanoi.viewer", scope=Scope.of(provinces=["ha-noi"]))
    _make_user(database, "everywhere.viewer")
    with api() as client:
        root, tho = _login(client, "root"), _login(client, "tho.admin")
        assert (
            client.post("/keys", json={"name": "hanoi-feed", "provinces": ["ha-noi"]}, headers=root).status_code == 201
        )

        other = client.post("/users", json={"username": "hn2", "provinces": ["ha-noi"]}, headers=tho)
        assert _detail(other, 403) == (
            "user:tho.admin may give only a scope within its own (provinces can-tho; sectors all), "
            "not provinces ha-noi; sectors all"
        )
        wider = client.post("/users", json={"username": "all2", "role": "viewer"}, headers=tho)
        assert _detail(wider, 403).endswith("not provinces all; sectors all")
        both = client.post("/users", json={"username": "ct2", "provinces": ["can-tho", "ha-noi"]}, headers=tho)
        assert both.status_code == 403
        key = client.post("/keys", json={"name": "hn-key", "provinces": ["ha-noi"]}, headers=tho)
        assert key.status_code == 403
        assert client.post("/keys", json={"name": "all-key"}, headers=tho).status_code == 403

        mine = client.post(
            "/users", json={"username": "ct.op", "role": "operator", "provinces": ["can-tho"]}, headers=tho
        )
        assert mine.status_code == 201, mine.text
        ct_key = client.post(
            "/keys", json={"name": "ct-feed", "provinces": ["can-tho"], "sectors": ["health"]}, headers=tho
        )
        assert ct_key.status_code == 201, ct_key.text

        # only what lies within can-tho is seen, read, changed or revoked
        assert [u["username"] for u in client.get("/users", headers=tho).json()] == ["ct.op", "tho.admin"]
        assert [k["name"] for k in client.get("/keys", headers=tho).json()] == ["ct-feed"]
        assert client.get("/users/hanoi.viewer", headers=tho).status_code == 404
        assert client.get("/users/everywhere.viewer", headers=tho).status_code == 404
        assert client.patch("/users/hanoi.viewer", json={"disabled": True}, headers=tho).status_code == 404
        assert client.post("/users/hanoi.viewer/password", json={}, headers=tho).status_code == 404
        assert client.delete("/keys/hanoi-feed", headers=tho).status_code == 404
        # nor may a user of theirs be moved outside it
        moved = client.patch("/users/ct.op", json={"provinces": ["ha-noi"]}, headers=tho)
        assert moved.status_code == 403
        assert client.patch("/users/ct.op", json={"sectors": ["energy"]}, headers=tho).status_code == 200

        # the all-scope admin sees everyone
        assert len(client.get("/users", headers=root).json()) == 5
        assert [k["name"] for k in client.get("/keys", headers=root).json()] == ["ct-feed", "hanoi-feed"]

    assert database.scalar("SELECT count(*) FROM users WHERE username IN ('hn2', 'all2', 'ct2')") == 0
    assert database.scalar("SELECT provinces FROM users WHERE username = 'ct.op'") == ["can-tho"]
    assert database.scalar("SELECT revoked_at FROM api_keys WHERE name = 'hanoi-feed'") is None


def test_no_secret_is_in_a_list_or_read_response_or_in_the_logs(
    database: ScratchDatabase, api: Callable[[], ApiServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _make_user(database, "root", role="admin")
    with api() as client:
        login = client.post("/auth/login", json={"username": "root", "password": PASSWORD}).json()
        admin = {"Authorization": f"Bearer {login['access_token']}"}
        refreshed = client.post("/auth/refresh", json={"refresh_token": login["refresh_token"]}).json()
        admin = {"Authorization": f"Bearer {refreshed['access_token']}"}
        user_password = client.post("/users", json={"username": "minh"}, headers=admin).json()["password"]
        chosen = "mật-khẩu-chọn-sẵn"
        client.post("/users/minh/password", json={"password": chosen}, headers=admin)
        key_secret = client.post("/keys", json={"name": "feed"}, headers=admin).json()["secret"]
        client.post("/auth/login", json={"username": "root", "password": "a wrong password here"})
        responses = [
            client.get("/users", headers=admin).text,
            client.get("/users/minh", headers=admin).text,
            client.get("/keys", headers=admin).text,
            client.get("/auth/me", headers=admin).text,
        ]
    secrets = {
        "admin password": PASSWORD,
        "wrong password": "a wrong password here",
        "access token": login["access_token"],
        "refresh token": login["refresh_token"],
        "rotated refresh token": refreshed["refresh_token"],
        "generated password": user_password,
        "chosen password": chosen,
        "key secret": key_secret,
    }
    with database.connect() as conn:
        dump = "\n".join(
            str(conn.execute(f"SELECT json_agg(t)::text FROM {table} t".encode()).fetchone())
            for table in ("users", "sessions", "spent_tokens", "api_keys", "login_attempts", "audit_log")
        )
    for where, text in {"responses": "\n".join(responses), "captured log": caplog.text, "database": dump}.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in the {where}"
    for text in responses:
        for field in ('"password"', '_hash"', '"secret"'):
            assert field not in text
