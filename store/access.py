"""The API's principals in the database: API keys, users, their sessions and login attempts; hashes only, never a
secret. An admin's reach is a `within` scope: a user or key is inside it when its own scope lies inside it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import sql

from store.pool import Conn
from store.scope import Scope

# pg_advisory_xact_lock(namespace, hashtext(name)) namespaces: one login at a time per username and per address,
# so that parallel guesses cannot all pass the failure count before any of them is recorded.
_LOGIN_USER_LOCK = 0x10C_A1
_LOGIN_ADDRESS_LOCK = 0x10C_A2


def _within(scope: Scope, *, table: str) -> tuple[sql.Composable, list[object]]:
    """Rows of `table` whose own scope lies inside `scope`: every province (sector) of theirs is one of its
    provinces (sectors); an all-provinces (all-sectors) row lies only inside an all-provinces (all-sectors) scope."""
    provinces, sectors = scope.as_arrays()
    condition = sql.SQL(
        "(%s::text[] IS NULL OR ({t}.provinces IS NOT NULL AND {t}.provinces <@ %s::text[])) "
        "AND (%s::text[] IS NULL OR ({t}.sectors IS NOT NULL AND {t}.sectors <@ %s::text[]))"
    ).format(t=sql.Identifier(table))
    return condition, [provinces, provinces, sectors, sectors]


def province_codes(conn: Conn) -> set[str]:
    """Every province code the center knows."""
    return {str(code) for (code,) in conn.execute("SELECT code FROM provinces").fetchall()}


def token_is_known(conn: Conn, token_hash: str) -> bool:
    """True when a key, an access or refresh token (live or not) or a spent refresh token has this hash: a failed
    request with it is an expired or revoked credential, not a guess."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = %(h)s) "
        "OR EXISTS (SELECT 1 FROM sessions WHERE access_hash = %(h)s OR refresh_hash = %(h)s) "
        "OR EXISTS (SELECT 1 FROM spent_tokens WHERE refresh_hash = %(h)s OR access_hash = %(h)s)",
        {"h": token_hash},
    ).fetchone()
    return bool(row and row[0])


# --- API keys -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: int
    name: str
    role: str
    scope: Scope
    expires_at: datetime
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_KEY_COLUMNS = "key_id, name, role, provinces, sectors, expires_at, created_by, created_at, last_used_at, revoked_at"


def _key(row: tuple[object, ...]) -> KeyRecord:
    key_id, name, role, provinces, sectors, expires_at, created_by, created_at, last_used_at, revoked_at = row
    return KeyRecord(
        key_id=int(key_id),  # type: ignore[call-overload]
        name=str(name),
        role=str(role),
        scope=Scope.of(provinces=provinces, sectors=sectors),  # type: ignore[arg-type]
        expires_at=expires_at,  # type: ignore[arg-type]
        created_by=str(created_by),
        created_at=created_at,  # type: ignore[arg-type]
        last_used_at=last_used_at,  # type: ignore[arg-type]
        revoked_at=revoked_at,  # type: ignore[arg-type]
    )


def insert_api_key(
    conn: Conn, *, name: str, key_hash: str, role: str, scope: Scope, expires_at: datetime, created_by: str
) -> KeyRecord | None:
    """The new key, or None when the name is taken."""
    provinces, sectors = scope.as_arrays()
    row = conn.execute(
        "INSERT INTO api_keys (name, key_hash, role, provinces, sectors, expires_at, created_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING " + _KEY_COLUMNS,
        (name, key_hash, role, provinces, sectors, expires_at, created_by),
    ).fetchone()
    return None if row is None else _key(row)


def find_live_api_key(conn: Conn, key_hash: str) -> KeyRecord | None:
    """The key with this hash if it is neither revoked nor expired; marks it used."""
    row = conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE key_hash = %s AND revoked_at IS NULL AND expires_at > now() "
        "RETURNING " + _KEY_COLUMNS,
        (key_hash,),
    ).fetchone()
    return None if row is None else _key(row)


def list_api_keys(conn: Conn, *, within: Scope) -> list[KeyRecord]:
    """Every key (revoked and expired ones too) whose scope lies within `within`, by name."""
    condition, params = _within(within, table="api_keys")
    query = sql.SQL("SELECT {} FROM api_keys WHERE {} ORDER BY name").format(sql.SQL(_KEY_COLUMNS), condition)
    return [_key(r) for r in conn.execute(query, params).fetchall()]


def revoke_api_key(conn: Conn, name: str, *, within: Scope) -> KeyRecord | None:
    """The revoked key, or None when there is no live key of that name within `within`."""
    condition, params = _within(within, table="api_keys")
    query = sql.SQL("UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL AND {} RETURNING {}")
    row = conn.execute(query.format(condition, sql.SQL(_KEY_COLUMNS)), [name, *params]).fetchone()
    return None if row is None else _key(row)


# --- users ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A person who logs in; the password hash stays in the database (see `find_password_hash`)."""

    user_id: int
    username: str
    display_name: str
    role: str
    scope: Scope
    disabled_at: datetime | None
    password_changed_at: datetime
    created_at: datetime
    updated_at: datetime


_USER_COLUMNS = (
    "user_id, username, display_name, role, provinces, sectors, disabled_at, password_changed_at, created_at, "
    "updated_at"
)


def _user(row: tuple[object, ...]) -> UserRecord:
    user_id, username, display_name, role, provinces, sectors, disabled_at, changed_at, created_at, updated_at = row
    return UserRecord(
        user_id=int(user_id),  # type: ignore[call-overload]
        username=str(username),
        display_name=str(display_name),
        role=str(role),
        scope=Scope.of(provinces=provinces, sectors=sectors),  # type: ignore[arg-type]
        disabled_at=disabled_at,  # type: ignore[arg-type]
        password_changed_at=changed_at,  # type: ignore[arg-type]
        created_at=created_at,  # type: ignore[arg-type]
        updated_at=updated_at,  # type: ignore[arg-type]
    )


def count_users(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM users").fetchone()
    return int(row[0]) if row else 0


def insert_user(
    conn: Conn, *, username: str, display_name: str, password_hash: str, role: str, scope: Scope
) -> UserRecord | None:
    """The new user, or None when the username is taken."""
    provinces, sectors = scope.as_arrays()
    row = conn.execute(
        "INSERT INTO users (username, display_name, password_hash, role, provinces, sectors) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (username) DO NOTHING RETURNING " + _USER_COLUMNS,
        (username, display_name, password_hash, role, provinces, sectors),
    ).fetchone()
    return None if row is None else _user(row)


def list_users(conn: Conn, *, within: Scope) -> list[UserRecord]:
    """Every user (disabled ones too) whose scope lies within `within`, by username."""
    condition, params = _within(within, table="users")
    query = sql.SQL("SELECT {} FROM users WHERE {} ORDER BY username").format(sql.SQL(_USER_COLUMNS), condition)
    return [_user(r) for r in conn.execute(query, params).fetchall()]


def find_user(conn: Conn, username: str, *, within: Scope) -> UserRecord | None:
    """The user of that name if their scope lies within `within`."""
    condition, params = _within(within, table="users")
    query = sql.SQL("SELECT {} FROM users WHERE username = %s AND {}").format(sql.SQL(_USER_COLUMNS), condition)
    row = conn.execute(query, [username, *params]).fetchone()
    return None if row is None else _user(row)


def find_user_by_id(conn: Conn, user_id: int) -> UserRecord | None:
    row = conn.execute("SELECT " + _USER_COLUMNS + " FROM users WHERE user_id = %s", (user_id,)).fetchone()
    return None if row is None else _user(row)


def find_password_hash(conn: Conn, username: str) -> tuple[UserRecord, str] | None:
    """The user of that name and their password hash, for a login."""
    row = conn.execute(
        "SELECT " + _USER_COLUMNS + ", password_hash FROM users WHERE username = %s", (username,)
    ).fetchone()
    return None if row is None else (_user(row[:-1]), str(row[-1]))


def update_user(
    conn: Conn, *, user_id: int, display_name: str, role: str, scope: Scope, disabled: bool
) -> UserRecord | None:
    """Write every changeable field at once; a user disabled before keeps the time they were disabled."""
    provinces, sectors = scope.as_arrays()
    row = conn.execute(
        "UPDATE users SET display_name = %s, role = %s, provinces = %s, sectors = %s, "
        "disabled_at = CASE WHEN %s THEN coalesce(disabled_at, now()) END, updated_at = now() "
        "WHERE user_id = %s RETURNING " + _USER_COLUMNS,
        (display_name, role, provinces, sectors, disabled, user_id),
    ).fetchone()
    return None if row is None else _user(row)


def update_password_hash(conn: Conn, *, user_id: int, password_hash: str, changed: bool) -> None:
    """A new hash: of a new password (`changed`), or of the same password with stronger parameters."""
    conn.execute(
        "UPDATE users SET password_hash = %s, "
        "password_changed_at = CASE WHEN %s THEN now() ELSE password_changed_at END, "
        "updated_at = CASE WHEN %s THEN now() ELSE updated_at END WHERE user_id = %s",
        (password_hash, changed, changed, user_id),
    )


# --- sessions -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A live session and whose it is, as seen by one request."""

    session_id: int
    user: UserRecord
    access_expires_at: datetime
    refresh_expires_at: datetime


def insert_session(
    conn: Conn,
    *,
    user_id: int,
    access_hash: str,
    refresh_hash: str,
    access_lifetime: timedelta,
    session_lifetime: timedelta,
    address: str | None,
) -> tuple[int, datetime, datetime]:
    """A new session: (session_id, access_expires_at, refresh_expires_at); the access token never outlives it."""
    row = conn.execute(
        "INSERT INTO sessions (user_id, access_hash, refresh_hash, access_expires_at, refresh_expires_at, address) "
        "VALUES (%s, %s, %s, now() + least(%s::interval, %s::interval), now() + %s::interval, %s) "
        "RETURNING session_id, access_expires_at, refresh_expires_at",
        (user_id, access_hash, refresh_hash, access_lifetime, session_lifetime, session_lifetime, address),
    ).fetchone()
    assert row is not None  # INSERT … RETURNING returns its row
    return int(row[0]), row[1], row[2]


_SESSION_USER_COLUMNS = ", ".join(f"u.{c.strip()}" for c in _USER_COLUMNS.split(","))


def find_live_session(conn: Conn, access_hash: str) -> SessionRecord | None:
    """The session of this access token if the token has not expired, the session is not revoked and its user is
    not disabled."""
    row = conn.execute(
        "SELECT s.session_id, s.access_expires_at, s.refresh_expires_at, " + _SESSION_USER_COLUMNS + " "
        "FROM sessions s JOIN users u ON u.user_id = s.user_id "
        "WHERE s.access_hash = %s AND s.revoked_at IS NULL AND s.access_expires_at > now() "
        "AND u.disabled_at IS NULL",
        (access_hash,),
    ).fetchone()
    if row is None:
        return None
    return SessionRecord(session_id=row[0], access_expires_at=row[1], refresh_expires_at=row[2], user=_user(row[3:]))


def rotate_session(
    conn: Conn, *, refresh_hash: str, new_access_hash: str, new_refresh_hash: str, access_lifetime: timedelta
) -> SessionRecord | None:
    """Exchange a live refresh token for new tokens and remember the old pair as spent; None when the refresh
    token is not the current one of a live session of an enabled user. One statement: of two concurrent exchanges
    of the same token, one wins and the other finds it spent."""
    row = conn.execute(
        "WITH old AS (SELECT session_id, access_hash FROM sessions WHERE refresh_hash = %s FOR UPDATE) "
        "UPDATE sessions s SET access_hash = %s, refresh_hash = %s, "
        "access_expires_at = least(now() + %s::interval, s.refresh_expires_at) "
        "FROM users u, old WHERE old.session_id = s.session_id AND u.user_id = s.user_id "
        "AND s.revoked_at IS NULL AND s.refresh_expires_at > now() AND u.disabled_at IS NULL "
        "RETURNING old.access_hash, s.session_id, s.access_expires_at, s.refresh_expires_at, " + _SESSION_USER_COLUMNS,
        (refresh_hash, new_access_hash, new_refresh_hash, access_lifetime),
    ).fetchone()
    if row is None:
        return None
    old_access_hash, row = row[0], row[1:]
    conn.execute(
        "INSERT INTO spent_tokens (refresh_hash, access_hash, session_id) VALUES (%s, %s, %s)",
        (refresh_hash, old_access_hash, row[0]),
    )
    return SessionRecord(session_id=row[0], access_expires_at=row[1], refresh_expires_at=row[2], user=_user(row[3:]))


def find_spent_refresh(conn: Conn, refresh_hash: str) -> tuple[int, str] | None:
    """(session_id, username) of the session that already exchanged this refresh token."""
    row = conn.execute(
        "SELECT s.session_id, u.username FROM spent_tokens t JOIN sessions s USING (session_id) "
        "JOIN users u ON u.user_id = s.user_id WHERE t.refresh_hash = %s",
        (refresh_hash,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def find_lost_renewal(conn: Conn, refresh_hash: str, *, grace: timedelta) -> str | None:
    """The current refresh hash of the live session that spent this refresh token less than `grace` ago, when no
    other renewal of that session happened from `grace` before it until now (see api.access.sessions)."""
    row = conn.execute(
        "SELECT s.refresh_hash FROM spent_tokens t JOIN sessions s USING (session_id) "
        "JOIN users u ON u.user_id = s.user_id "
        "WHERE t.refresh_hash = %s AND t.spent_at > now() - %s::interval "
        "AND s.revoked_at IS NULL AND s.refresh_expires_at > now() AND u.disabled_at IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM spent_tokens o WHERE o.session_id = t.session_id "
        "AND o.refresh_hash <> t.refresh_hash AND o.spent_at >= t.spent_at - %s::interval)",
        (refresh_hash, grace, grace),
    ).fetchone()
    return None if row is None else str(row[0])


def revoke_session(conn: Conn, session_id: int) -> bool:
    """True when the session was live until now."""
    cur = conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE session_id = %s AND revoked_at IS NULL", (session_id,)
    )
    return cur.rowcount > 0


def revoke_user_sessions(conn: Conn, user_id: int) -> int:
    """Revoke every live session of a user; how many there were."""
    cur = conn.execute("UPDATE sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (user_id,))
    return cur.rowcount


def delete_ended_sessions(conn: Conn, *, ended_before: timedelta) -> int:
    """Forget sessions (and their spent tokens) that ended more than `ended_before` ago."""
    cur = conn.execute(
        "DELETE FROM sessions WHERE least(refresh_expires_at, coalesce(revoked_at, 'infinity')) < now() - %s::interval",
        (ended_before,),
    )
    return cur.rowcount


# --- login attempts -------------------------------------------------------------------------------------------


def lock_login_counters(conn: Conn, *, username: str, address: str) -> None:
    """Until this transaction ends, no other login of this username or from this address counts or records
    attempts. Always username first, then address: two logins never wait for each other in a cycle."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOGIN_USER_LOCK, username))
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOGIN_ADDRESS_LOCK, address))


def user_failures_retry_after(conn: Conn, *, username: str, limit: int, window: timedelta) -> timedelta | None:
    """None while the username has fewer than `limit` failed logins in the window since its last successful one;
    otherwise how long until it has fewer again (when the `limit`-th most recent failure leaves the window)."""
    row = conn.execute(
        "SELECT at + %(w)s::interval - now() FROM login_attempts WHERE username = %(u)s AND NOT ok "
        "AND at > now() - %(w)s::interval AND at > coalesce((SELECT max(at) FROM login_attempts "
        "WHERE username = %(u)s AND ok), '-infinity') ORDER BY at DESC OFFSET %(n)s LIMIT 1",
        {"u": username, "w": window, "n": limit - 1},
    ).fetchone()
    return None if row is None else row[0]


def address_failures_retry_after(conn: Conn, *, address: str, limit: int, window: timedelta) -> timedelta | None:
    """As `user_failures_retry_after`, for every failed login from one client address (a success does not reset
    it: one known account must not open the door to guessing others)."""
    row = conn.execute(
        "SELECT at + %(w)s::interval - now() FROM login_attempts WHERE address = %(a)s AND NOT ok "
        "AND at > now() - %(w)s::interval ORDER BY at DESC OFFSET %(n)s LIMIT 1",
        {"a": address, "w": window, "n": limit - 1},
    ).fetchone()
    return None if row is None else row[0]


def insert_login_attempt(conn: Conn, *, username: str, address: str) -> int:
    """A login attempt, failed until `mark_login_ok`; its id."""
    row = conn.execute(
        "INSERT INTO login_attempts (username, address, ok) VALUES (%s, %s, false) RETURNING attempt_id",
        (username, address),
    ).fetchone()
    assert row is not None  # INSERT … RETURNING returns its row
    return int(row[0])


def mark_login_ok(conn: Conn, attempt_id: int) -> None:
    conn.execute("UPDATE login_attempts SET ok = true WHERE attempt_id = %s", (attempt_id,))


def forget_login_attempt(conn: Conn, attempt_id: int) -> None:
    """An attempt whose password was never checked (the center was busy): it is no failure."""
    conn.execute("DELETE FROM login_attempts WHERE attempt_id = %s", (attempt_id,))


def delete_old_login_attempts(conn: Conn, *, older_than: timedelta) -> int:
    cur = conn.execute("DELETE FROM login_attempts WHERE at < now() - %s::interval", (older_than,))
    return cur.rowcount
