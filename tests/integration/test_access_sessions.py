"""People's sessions through the real API: login, access, refresh rotation (a spent refresh token revokes its
session), logout, expiry, disabling and password changes taking effect at once; bad logins limited per username
and per address (429, Retry-After), unknown tokens limited per address; logins audited with their address."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from api.access import passwords
from api.access.users import UserChanges, create_user, set_password, update_user
from store.scope import EVERYTHING, Scope
from tests.integration.conftest import ApiServer, ScratchDatabase

PASSWORD = "đèn-giao-thông-42"


def _make_user(database: ScratchDatabase, username: str, *, role: str = "viewer", scope: Scope = EVERYTHING) -> None:
    with psycopg.connect(database.url) as conn:
        create_user(conn, username=username, password=PASSWORD, role=role, scope=scope, actor="test")
        conn.commit()


def _login(client: httpx.Client, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["detail"])


def test_login_refresh_rotation_and_logout(database: ScratchDatabase, api: Callable[[], ApiServer]) -> None:
    _make_user(database, "an.nguyen", role="operator", scope=Scope.of(provinces=["can-tho"]))
    with api() as client:
        first = _login(client, "An.Nguyen")  # usernames are case-insensitive
        assert first["token_type"] == "bearer"
        assert first["access_token"].startswith("ioc_a_")
        assert first["refresh_token"].startswith("ioc_r_")
        assert 0 < first["expires_in"] <= 900

        me = client.get("/auth/me", headers=_bearer(first["access_token"]))
        assert me.status_code == 200, me.text
        body = me.json()
        assert datetime.fromisoformat(body.pop("expires_at")) == datetime.fromisoformat(first["access_expires_at"])
        assert body == {
            "kind": "user",
            "name": "an.nguyen",
            "display_name": "",
            "role": "operator",
            "provinces": ["can-tho"],
            "sectors": None,
        }

        second = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200, second.text
        rotated = second.json()
        assert rotated["access_token"] != first["access_token"]
        assert rotated["refresh_token"] != first["refresh_token"]
        # the session still ends when the login said it would
        assert rotated["refresh_expires_at"] == first["refresh_expires_at"]
        assert client.get("/auth/me", headers=_bearer(rotated["access_token"])).status_code == 200
        assert "expired or revoked" in _detail(client.get("/auth/me", headers=_bearer(first["access_token"])), 401)

        # the owner renews again; then the first refresh token comes back: stolen, so the whole session ends
        again = client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
        assert again.status_code == 200, again.text
        reused = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert "used before" in _detail(reused, 401)
        assert client.get("/auth/me", headers=_bearer(again.json()["access_token"])).status_code == 401
        assert client.post("/auth/refresh", json={"refresh_token": again.json()["refresh_token"]}).status_code == 401

        # a new login, then logout: both of its tokens stop at once
        third = _login(client, "an.nguyen")
        out = client.post("/auth/logout", headers=_bearer(third["access_token"]))
        assert out.status_code == 204, out.text
        assert client.get("/auth/me", headers=_bearer(third["access_token"])).status_code == 401
        assert client.post("/auth/refresh", json={"refresh_token": third["refresh_token"]}).status_code == 401

    revoked = database.scalar("SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL")
    assert revoked == 2
    actions = database.scalar(
        "SELECT array_agg(action ORDER BY id) FROM audit_log WHERE target = 'user:an.nguyen' AND actor <> 'test'"
    )
    assert actions == ["login.ok", "session.revoke", "login.ok", "logout"]


def test_a_renewal_whose_answer_was_lost_is_renewed_once_more_and_a_second_copy_ends_the_session(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    _make_user(database, "lan.tran")
    with api() as client:
        first = _login(client, "lan.tran")
        lost = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
        # the page reloaded before the answer arrived: it still holds the first pair
        retried = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert retried.status_code == 200, retried.text
        renewed = retried.json()
        assert client.get("/auth/me", headers=_bearer(renewed["access_token"])).status_code == 200
        assert client.get("/auth/me", headers=_bearer(lost["access_token"])).status_code == 401
        # the lost pair turning up afterwards is a copy: the session ends
        assert "used before" in _detail(
            client.post("/auth/refresh", json={"refresh_token": lost["refresh_token"]}), 401
        )
        assert client.get("/auth/me", headers=_bearer(renewed["access_token"])).status_code == 401


def test_without_a_grace_a_spent_refresh_token_always_ends_the_session(
    database: ScratchDatabase, api: Callable[[], ApiServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_REFRESH_RETRY_GRACE_S", "0")
    _make_user(database, "lan.tran")
    with api() as client:
        first = _login(client, "lan.tran")
        rotated = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
        assert "used before" in _detail(
            client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401
        )
        assert client.get("/auth/me", headers=_bearer(rotated["access_token"])).status_code == 401


def test_an_expired_access_token_is_refused_and_the_refresh_token_renews_it(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    _make_user(database, "binh")
    with api() as client:
        tokens = _login(client, "binh")
        with psycopg.connect(database.url) as conn:
            conn.execute("UPDATE sessions SET access_expires_at = now() - interval '1 second'")
        refused = client.get("/auth/me", headers=_bearer(tokens["access_token"]))
        assert "POST /auth/refresh" in _detail(refused, 401)
        assert refused.headers["www-authenticate"] == "Bearer"
        renewed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert renewed.status_code == 200, renewed.text
        assert client.get("/auth/me", headers=_bearer(renewed.json()["access_token"])).json()["name"] == "binh"

        # a session past its end cannot be renewed
        with psycopg.connect(database.url) as conn:
            conn.execute("UPDATE sessions SET refresh_expires_at = now() - interval '1 second'")
        ended = client.post("/auth/refresh", json={"refresh_token": renewed.json()["refresh_token"]})
        assert "session has ended" in _detail(ended, 401)


def test_disabling_a_user_refuses_their_tokens_at_once_and_enabling_lets_them_log_in_again(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    _make_user(database, "chi")
    with api() as client:
        tokens = _login(client, "chi")
        assert client.get("/auth/me", headers=_bearer(tokens["access_token"])).status_code == 200
        with psycopg.connect(database.url) as conn:
            update_user(conn, username="chi", changes=UserChanges(disabled=True), actor="test")
            conn.commit()
        assert client.get("/auth/me", headers=_bearer(tokens["access_token"])).status_code == 401
        assert client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
        refused = client.post("/auth/login", json={"username": "chi", "password": PASSWORD})
        assert _detail(refused, 401) == "wrong username or password, or the account is disabled"

        with psycopg.connect(database.url) as conn:
            update_user(conn, username="chi", changes=UserChanges(disabled=False), actor="test")
            conn.commit()
        # enabling does not bring old sessions back
        assert client.get("/auth/me", headers=_bearer(tokens["access_token"])).status_code == 401
        assert client.get("/auth/me", headers=_bearer(_login(client, "chi")["access_token"])).status_code == 200
    reasons = database.scalar(
        "SELECT array_agg(details->>'reason' ORDER BY id) FROM audit_log WHERE action = 'login.failed'"
    )
    assert reasons == ["disabled"]


def test_a_password_change_or_role_change_ends_every_session_of_the_user(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    _make_user(database, "dung", role="operator")
    with api() as client:
        phone, desk = _login(client, "dung"), _login(client, "dung")
        with psycopg.connect(database.url) as conn:
            set_password(conn, username="dung", password="mật-khẩu-mới-2026", actor="test")
            conn.commit()
        for tokens in (phone, desk):
            assert client.get("/auth/me", headers=_bearer(tokens["access_token"])).status_code == 401
            assert client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
        assert client.post("/auth/login", json={"username": "dung", "password": PASSWORD}).status_code == 401

        # the user changes their own password: the current one is needed, then every session ends
        tokens = _login(client, "dung", "mật-khẩu-mới-2026")
        wrong = client.post(
            "/auth/password",
            json={"current_password": PASSWORD, "new_password": "another-long-one"},
            headers=_bearer(tokens["access_token"]),
        )
        assert _detail(wrong, 401) == "the current password is wrong"
        weak = client.post(
            "/auth/password",
            json={"current_password": "mật-khẩu-mới-2026", "new_password": "short"},
            headers=_bearer(tokens["access_token"]),
        )
        assert _detail(weak, 422) == "a password needs at least 12 characters"
        changed = client.post(
            "/auth/password",
            json={"current_password": "mật-khẩu-mới-2026", "new_password": "another-long-one"},
            headers=_bearer(tokens["access_token"]),
        )
        assert changed.status_code == 204, changed.text
        assert client.get("/auth/me", headers=_bearer(tokens["access_token"])).status_code == 401

        tokens = _login(client, "dung", "another-long-one")
        with psycopg.connect(database.url) as conn:
            update_user(conn, username="dung", changes=UserChanges(role="viewer"), actor="test")
            conn.commit()
        assert client.get("/auth/me", headers=_bearer(tokens["access_token"])).status_code == 401
        assert (
            client.get("/auth/me", headers=_bearer(_login(client, "dung", "another-long-one")["access_token"])).json()[
                "role"
            ]
            == "viewer"
        )


def test_the_oauth2_password_form_logs_in_as_swagger_sends_it(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    _make_user(database, "em")
    with api() as client:
        response = client.post("/auth/token", data={"grant_type": "password", "username": "em", "password": PASSWORD})
        assert response.status_code == 200, response.text
        assert client.get("/auth/me", headers=_bearer(response.json()["access_token"])).json()["name"] == "em"
        wrong = client.post("/auth/token", data={"username": "em", "password": "not the password"})
        assert _detail(wrong, 401) == "wrong username or password, or the account is disabled"
        document = client.get("/openapi.json").json()
        schemes = document["components"]["securitySchemes"]
        assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/auth/token"
        assert schemes["HTTPBearer"] == {
            "type": "http",
            "scheme": "bearer",
            "description": "a user's access token (POST /auth/login) or an API key",
        }


def test_bad_logins_are_limited_per_username_then_answered_429_with_retry_after(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    _make_user(database, "giang")
    with api() as client:
        for _ in range(5):
            wrong = client.post("/auth/login", json={"username": "giang", "password": "guess-guess-guess"})
            assert wrong.status_code == 401
        # the sixth try is refused before the password is checked, even the right one
        limited = client.post("/auth/login", json={"username": "giang", "password": PASSWORD})
        assert _detail(limited, 429).startswith("too many failed logins for user 'giang': try again in ")
        assert 850 <= int(limited.headers["retry-after"]) <= 900
        # other users from the same address are not affected by giang's failures
        _make_user(database, "hoa")
        assert _login(client, "hoa")["access_token"]

        # once the failures are older than the window, the right password works, and a success resets the count
        with psycopg.connect(database.url) as conn:
            conn.execute("UPDATE login_attempts SET at = at - interval '16 minutes' WHERE username = 'giang'")
        assert _login(client, "giang")["access_token"]
        for _ in range(4):
            assert (
                client.post("/auth/login", json={"username": "giang", "password": "nope-nope-nope"}).status_code == 401
            )
        assert _login(client, "giang")["access_token"]

    failures = database.scalar("SELECT count(*) FROM audit_log WHERE action = 'login.failed' AND address = '127.0.0.1'")
    assert failures == 9
    ok = database.scalar(
        "SELECT array_agg(actor ORDER BY id) FROM audit_log WHERE action = 'login.ok' AND address = '127.0.0.1'"
    )
    assert ok == ["user:hoa", "user:giang", "user:giang"]
    # the 429 was not an attempt (nothing recorded, nothing audited), and the five attempts older than the window
    # were pruned: six remain
    assert database.scalar("SELECT count(*) FROM login_attempts WHERE username = 'giang'") == 6
    assert PASSWORD not in str(database.scalar("SELECT json_agg(details)::text FROM audit_log"))


def test_logins_beyond_the_hashing_slots_wait_then_get_503_and_are_not_counted_as_failures(
    database: ScratchDatabase, api: Callable[[], ApiServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Password checks are bounded per process (each costs a core for ~50 ms and 64 MiB): with every slot taken, a
    login waits HASH_WAIT_S, then answers 503 with Retry-After; nothing was checked, so nothing counts against the
    user. Once a slot frees up, the same login works."""
    monkeypatch.setattr(passwords, "HASH_WAIT_S", 0.3)
    _make_user(database, "khanh")
    with api() as client:
        with contextlib.ExitStack() as held:
            for _ in range(passwords.CONCURRENT_HASHES):
                held.enter_context(passwords.hashing_slot())
            for _ in range(6):  # more than the failures a username may have
                busy = client.post("/auth/login", json={"username": "khanh", "password": PASSWORD})
                assert _detail(busy, 503) == "the center is busy checking other passwords: try again in a few seconds"
                assert busy.headers["retry-after"] == "2"
            assert database.scalar("SELECT count(*) FROM login_attempts WHERE username = 'khanh'") == 0
            assert database.scalar("SELECT count(*) FROM audit_log WHERE action = 'login.failed'") == 0
        assert _login(client, "khanh")["access_token"]


def test_bad_logins_are_limited_per_address_across_usernames(
    database: ScratchDatabase, api: Callable[[], ApiServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_LOGIN_FAILURES_PER_ADDRESS", "6")
    _make_user(database, "khanh")
    with api() as client:
        for i in range(6):
            guess = client.post("/auth/login", json={"username": f"nobody{i}", "password": "guess-guess-guess"})
            assert _detail(guess, 401) == "wrong username or password, or the account is disabled"
        limited = client.post("/auth/login", json={"username": "khanh", "password": PASSWORD})
        assert _detail(limited, 429).startswith("too many failed logins for this address: try again in ")
        assert int(limited.headers["retry-after"]) > 0
    reasons = database.scalar(
        "SELECT array_agg(DISTINCT details->>'reason') FROM audit_log WHERE action = 'login.failed'"
    )
    assert reasons == ["unknown user"]


def test_unknown_tokens_are_limited_per_address_and_expired_ones_are_not_counted(
    database: ScratchDatabase, api: Callable[[], ApiServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_TOKEN_FAILURES_PER_ADDRESS", "5")
    _make_user(database, "lan")
    with api() as client:
        tokens = _login(client, "lan")
        with psycopg.connect(database.url) as conn:
            conn.execute("UPDATE sessions SET access_expires_at = now() - interval '1 second'")
        for _ in range(10):  # a client still using its expired token is not a guesser
            assert client.get("/auth/me", headers=_bearer(tokens["access_token"])).status_code == 401

        for i in range(5):
            guess = client.get("/auth/me", headers=_bearer(f"ioc_k_guess{i}"))
            assert _detail(guess, 401) == "unknown token"
        limited = client.get("/auth/me", headers=_bearer("ioc_k_guess5"))
        assert _detail(limited, 429).startswith("too many unknown tokens from this address: try again in ")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # while refused, no token is looked at, a good one neither; unknown refresh tokens count too
        fresh = _login(client, "lan")
        assert client.get("/auth/me", headers=_bearer(fresh["access_token"])).status_code == 429
        assert client.post("/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 429
        # no token at all is still a plain 401
        assert client.get("/auth/me").status_code == 401
