"""People's sessions: log in (rate-limited per username and per client address, audited), exchange a refresh token
for new tokens (a refresh token works once; presenting a spent one revokes its session), log out, and find the
user behind an access token. Tokens are random and stored as SHA-256 digests (api.access.tokens).

These functions commit: a failed login must count, and be audited, although the request that made it fails."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from api.access.passwords import (
    check_password_policy,
    hash_password,
    needs_rehash,
    verify_for_unknown_user,
    verify_password,
)
from api.access.tokens import ACCESS_PREFIX, REFRESH_PREFIX, digest, new_secret
from api.access.users import check_username
from api.principal import Principal, Role
from core.errors import Busy, InvalidRequest, TooManyRequests, Unauthenticated
from core.settings import Settings
from devices.audit import record_audit
from store import access as db
from store.pool import Conn

_LOGGER = logging.getLogger(__name__)

# Where a request came from when the server cannot tell (login_attempts.address is never NULL).
UNKNOWN_ADDRESS: Final = "unknown"
# Ended sessions are kept this long (a reused refresh token is recognised as such), then deleted.
ENDED_SESSIONS_KEPT: Final = timedelta(days=1)

LOGIN_REFUSED: Final = "wrong username or password, or the account is disabled"


class UnknownToken(Unauthenticated):
    """A token that no key or session ever had: a guess, counted by the unknown-token limiter."""


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Lifetimes and login limits, from Settings."""

    access_lifetime: timedelta
    session_lifetime: timedelta
    failure_window: timedelta
    failures_per_user: int
    failures_per_address: int
    refresh_retry_grace: timedelta = timedelta(0)

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(
            access_lifetime=timedelta(seconds=settings.access_token_ttl_s),
            session_lifetime=timedelta(seconds=settings.refresh_token_ttl_s),
            failure_window=timedelta(seconds=settings.login_failure_window_s),
            failures_per_user=settings.login_failures_per_user,
            failures_per_address=settings.login_failures_per_address,
            refresh_retry_grace=timedelta(seconds=settings.refresh_retry_grace_s),
        )


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A new access and refresh token: the only time they exist outside the caller."""

    username: str
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime

    def __repr__(self) -> str:  # never print a secret
        return f"IssuedTokens(username={self.username!r}, access_expires_at={self.access_expires_at!r})"


def _throttle(conn: Conn, *, username: str, address: str, policy: SessionPolicy) -> None:
    """TooManyRequests while the username or the address has failed too often in the window."""
    by_user = db.user_failures_retry_after(
        conn, username=username, limit=policy.failures_per_user, window=policy.failure_window
    )
    by_address = db.address_failures_retry_after(
        conn, address=address, limit=policy.failures_per_address, window=policy.failure_window
    )
    if by_user is None and by_address is None:
        return
    conn.commit()  # release the counters' locks
    waits = [wait for wait in (by_user, by_address) if wait is not None]
    retry_after_s = max(1.0, max(waits).total_seconds())
    what = f"user {username!r}" if by_user is not None else "this address"
    _LOGGER.warning("login refused without a check: too many failed logins for %s (from %s)", username, address)
    raise TooManyRequests(
        f"too many failed logins for {what}: try again in {retry_after_s:.0f} s", retry_after_s=retry_after_s
    )


def _start_attempt(conn: Conn, *, username: str, address: str | None, policy: SessionPolicy) -> int:
    """Count and record a password attempt under the counters' locks (TooManyRequests when over a limit), to be
    verified afterwards with no lock held: an attempt counts as failed from the moment it starts, so parallel
    guesses cannot slip past the limit."""
    where = address or UNKNOWN_ADDRESS
    db.lock_login_counters(conn, username=username, address=where)
    _throttle(conn, username=username, address=where, policy=policy)
    attempt_id = db.insert_login_attempt(conn, username=username, address=where)
    db.delete_old_login_attempts(conn, older_than=policy.failure_window)
    conn.commit()
    return attempt_id


def log_in(conn: Conn, *, username: str, password: str, address: str | None, policy: SessionPolicy) -> IssuedTokens:
    """A new session for a correct password of an enabled user. Unauthenticated otherwise (one message for an
    unknown user, a wrong password and a disabled account), TooManyRequests after too many failures."""
    name = check_username(username)
    attempt_id = _start_attempt(conn, username=name, address=address, policy=policy)
    found = db.find_password_hash(conn, name)
    try:
        if found is None:
            verify_for_unknown_user(password)
            reason = "unknown user"
        elif not verify_password(found[1], password):
            reason = "wrong password"
        elif found[0].disabled_at is not None:
            reason = "disabled"
        else:
            reason = ""
    except Busy:
        db.forget_login_attempt(conn, attempt_id)  # nothing was checked: not a failed login
        conn.commit()
        raise
    if reason:
        record_audit(
            conn,
            actor=f"user:{name}",
            action="login.failed",
            target=f"user:{name}",
            details={"reason": reason},
            address=address,
        )
        conn.commit()
        raise Unauthenticated(LOGIN_REFUSED)

    assert found is not None  # an empty reason means the user was found
    user, password_hash = found
    db.mark_login_ok(conn, attempt_id)
    if needs_rehash(password_hash):
        db.update_password_hash(conn, user_id=user.user_id, password_hash=hash_password(password), changed=False)
    access, refresh = new_secret(ACCESS_PREFIX), new_secret(REFRESH_PREFIX)
    session_id, access_expires_at, refresh_expires_at = db.insert_session(
        conn,
        user_id=user.user_id,
        access_hash=digest(access),
        refresh_hash=digest(refresh),
        access_lifetime=policy.access_lifetime,
        session_lifetime=policy.session_lifetime,
        address=address,
    )
    db.delete_ended_sessions(conn, ended_before=ENDED_SESSIONS_KEPT)
    record_audit(
        conn,
        actor=f"user:{name}",
        action="login.ok",
        target=f"user:{name}",
        details={"session_id": session_id},
        address=address,
    )
    conn.commit()
    return IssuedTokens(
        username=name,
        access_token=access,
        access_expires_at=access_expires_at,
        refresh_token=refresh,
        refresh_expires_at=refresh_expires_at,
    )


def refresh_session(conn: Conn, *, refresh_token: str, address: str | None, policy: SessionPolicy) -> IssuedTokens:
    """New tokens for the current refresh token of a live session; the old refresh (and access) token stop
    working. A refresh token presented a second time was copied: its session is revoked. The session still ends
    when it was going to (`refresh_expires_at` of the login).

    One exception: the answer to a renewal can be lost (the page reloaded or the connection dropped while it was
    in flight), and the client then holds only the token it spent. Presented again within `refresh_retry_grace`,
    when that renewal is the session's only one in that time, it is renewed once more from the session's current
    tokens, which the lost answer held and which stop working. A thief racing the owner gains at most that one
    renewal: the owner's next renewal presents a spent token outside the rule and ends the session."""
    old_hash = digest(refresh_token)
    access, refresh = new_secret(ACCESS_PREFIX), new_secret(REFRESH_PREFIX)
    session = db.rotate_session(
        conn,
        refresh_hash=old_hash,
        new_access_hash=digest(access),
        new_refresh_hash=digest(refresh),
        access_lifetime=policy.access_lifetime,
    )
    if session is None and policy.refresh_retry_grace > timedelta(0):
        current = db.find_lost_renewal(conn, old_hash, grace=policy.refresh_retry_grace)
        if current is not None:
            session = db.rotate_session(
                conn,
                refresh_hash=current,
                new_access_hash=digest(access),
                new_refresh_hash=digest(refresh),
                access_lifetime=policy.access_lifetime,
            )
            if session is not None:
                _LOGGER.info("session %d renewed again: the answer to its last renewal was lost", session.session_id)
    if session is not None:
        conn.commit()
        return IssuedTokens(
            username=session.user.username,
            access_token=access,
            access_expires_at=session.access_expires_at,
            refresh_token=refresh,
            refresh_expires_at=session.refresh_expires_at,
        )
    spent = db.find_spent_refresh(conn, old_hash)
    if spent is not None:
        session_id, username = spent
        if db.revoke_session(conn, session_id):
            record_audit(
                conn,
                actor=f"user:{username}",
                action="session.revoke",
                target=f"user:{username}",
                details={"session_id": session_id, "reason": "a spent refresh token was presented again"},
                address=address,
            )
        conn.commit()
        raise Unauthenticated("this refresh token was used before, so its session is revoked: log in again")
    known = db.token_is_known(conn, old_hash)
    conn.commit()
    if known:
        raise Unauthenticated("the session has ended (expired, logged out or revoked): log in again")
    raise UnknownToken("unknown refresh token: log in again")


def log_out(conn: Conn, *, principal: Principal) -> None:
    """End the caller's session at once: its access and refresh tokens stop working."""
    if principal.session_id is None:
        raise InvalidRequest("log out ends a user's session; an API key is revoked with DELETE /keys/{name}")
    db.revoke_session(conn, principal.session_id)
    record_audit(
        conn,
        actor=principal.actor,
        action="logout",
        target=principal.actor,
        details={"session_id": principal.session_id},
        address=principal.address,
    )
    conn.commit()


def change_own_password(
    conn: Conn, *, principal: Principal, current_password: str, new_password: str, policy: SessionPolicy
) -> None:
    """A user's new password, given their current one (a wrong one counts as a failed login); every session of
    theirs, this one too, is revoked."""
    if principal.kind != "user":
        raise InvalidRequest("only a user has a password; an API key is replaced with POST /keys")
    check_password_policy(new_password, username=principal.name)
    attempt_id = _start_attempt(conn, username=principal.name, address=principal.address, policy=policy)
    found = db.find_password_hash(conn, principal.name)
    if found is None or not verify_password(found[1], current_password):
        record_audit(
            conn,
            actor=principal.actor,
            action="user.password.failed",
            target=principal.actor,
            details={"reason": "wrong current password"},
            address=principal.address,
        )
        conn.commit()
        raise Unauthenticated("the current password is wrong")
    user = found[0]
    db.mark_login_ok(conn, attempt_id)
    db.update_password_hash(conn, user_id=user.user_id, password_hash=hash_password(new_password), changed=True)
    revoked = db.revoke_user_sessions(conn, user.user_id)
    record_audit(
        conn,
        actor=principal.actor,
        action="user.password",
        target=principal.actor,
        details={"sessions_revoked": revoked},
        address=principal.address,
    )
    conn.commit()


def principal_for_access_token(conn: Conn, token: str, *, address: str | None) -> Principal | None:
    """The user behind a live access token, or None (unknown, expired, revoked, or the user is disabled)."""
    session = db.find_live_session(conn, digest(token))
    if session is None:
        return None
    user = session.user
    role: Role = user.role  # type: ignore[assignment]  # the table's CHECK holds it to ROLES
    return Principal(
        kind="user",
        id=user.user_id,
        name=user.username,
        role=role,
        scope=user.scope,
        address=address,
        session_id=session.session_id,
        expires_at=session.access_expires_at,
    )
