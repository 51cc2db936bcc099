"""People who log in: create, list, read, change (display name, role, scope, disabled) and set passwords, each
write audited; the first admin of a demo. Whatever narrows what a user may do (disable, role, scope, password)
revokes their sessions at once. Admins reach only users whose scope lies within their own (`within`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from api.access.passwords import check_password_policy, generate_password, hash_password
from api.access.scopes import check_scope_codes, check_within
from api.principal import ROLES
from core.errors import Conflict, Forbidden, InvalidRequest, NotFound
from devices.audit import record_audit
from store import access as db
from store.access import UserRecord
from store.pool import Conn
from store.scope import EVERYTHING, Scope

# Lowercase letters, digits and `._-`, starting with a letter or digit: safe in logs, URLs and the audit log.
USERNAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
DISPLAY_NAME_MAX_CHARS: Final = 200
FIRST_ADMIN: Final = "admin"


class DuplicateUser(Conflict):
    """A username that is already taken."""


def normalize_username(text: str) -> str:
    """Usernames are case-insensitive: `Alice` logs in as `alice`."""
    return text.strip().lower()


def check_username(username: str) -> str:
    """The normalized username, or InvalidRequest."""
    name = normalize_username(username)
    if not USERNAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            "a username has 1 to 64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_display_name(display_name: str) -> str:
    name = display_name.strip()
    if len(name) > DISPLAY_NAME_MAX_CHARS:
        raise InvalidRequest(f"a display name has at most {DISPLAY_NAME_MAX_CHARS} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidRequest("a display name has no control characters")
    return name


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def _target(username: str) -> str:
    return f"user:{username}"


def _scope_details(scope: Scope) -> dict[str, object]:
    provinces, sectors = scope.as_arrays()
    return {"provinces": provinces, "sectors": sectors}


def create_user(
    conn: Conn,
    *,
    username: str,
    password: str,
    role: str,
    scope: Scope = EVERYTHING,
    display_name: str = "",
    actor: str,
    within: Scope = EVERYTHING,
    address: str | None = None,
) -> UserRecord:
    """A new user. InvalidRequest for a bad username, role, scope or password (WeakPassword), Forbidden for a scope
    outside `within` (the acting admin's), DuplicateUser for a taken name."""
    name = check_username(username)
    check_role(role)
    check_scope_codes(scope, known_provinces=db.province_codes(conn))
    check_within(scope, actor_scope=within, actor=actor)
    check_password_policy(password, username=name)
    record = db.insert_user(
        conn,
        username=name,
        display_name=check_display_name(display_name),
        password_hash=hash_password(password),
        role=role,
        scope=scope,
    )
    if record is None:
        raise DuplicateUser(f"a user named {name!r} exists already")
    record_audit(
        conn,
        actor=actor,
        action="user.create",
        target=_target(name),
        details={"role": role, **_scope_details(scope)},
        address=address,
    )
    return record


def list_users(conn: Conn, *, within: Scope = EVERYTHING) -> list[UserRecord]:
    return db.list_users(conn, within=within)


def get_user(conn: Conn, *, username: str, within: Scope = EVERYTHING) -> UserRecord:
    """The user, or NotFound (also for a user outside `within`: an admin does not learn who exists elsewhere)."""
    record = db.find_user(conn, normalize_username(username), within=within)
    if record is None:
        raise NotFound(f"no user named {username!r}")
    return record


@dataclass(frozen=True, slots=True)
class UserChanges:
    """What to change; None leaves a field as it is (a Scope() is every province and sector)."""

    display_name: str | None = None
    role: str | None = None
    scope: Scope | None = None
    disabled: bool | None = None


def update_user(
    conn: Conn,
    *,
    username: str,
    changes: UserChanges,
    actor: str,
    within: Scope = EVERYTHING,
    address: str | None = None,
) -> UserRecord:
    """Apply `changes`; a change of role or scope, or disabling, revokes the user's sessions. An admin cannot
    disable themselves or change their own role (another admin must), so the center never loses its last admin
    by accident."""
    current = get_user(conn, username=username, within=within)
    role = current.role if changes.role is None else changes.role
    scope = current.scope if changes.scope is None else changes.scope
    disabled = (current.disabled_at is not None) if changes.disabled is None else changes.disabled
    display_name = current.display_name if changes.display_name is None else check_display_name(changes.display_name)
    check_role(role)
    if scope != current.scope:
        check_scope_codes(scope, known_provinces=db.province_codes(conn))
        check_within(scope, actor_scope=within, actor=actor)
    if actor == _target(current.username) and (role != current.role or (disabled and current.disabled_at is None)):
        raise Forbidden("you cannot disable yourself or change your own role: another admin can")

    details: dict[str, object] = {}
    if display_name != current.display_name:
        details["display_name"] = {"from": current.display_name, "to": display_name}
    if role != current.role:
        details["role"] = {"from": current.role, "to": role}
    if scope != current.scope:
        details["scope"] = {"from": _scope_details(current.scope), "to": _scope_details(scope)}
    if disabled != (current.disabled_at is not None):
        details["disabled"] = {"from": not disabled, "to": disabled}
    if not details:
        return current
    record = db.update_user(
        conn, user_id=current.user_id, display_name=display_name, role=role, scope=scope, disabled=disabled
    )
    assert record is not None  # the row was read in this transaction
    action = ("user.disable" if disabled else "user.enable") if set(details) == {"disabled"} else "user.update"
    if role != current.role or scope != current.scope or (disabled and current.disabled_at is None):
        details["sessions_revoked"] = db.revoke_user_sessions(conn, current.user_id)
    record_audit(conn, actor=actor, action=action, target=_target(current.username), details=details, address=address)
    return record


def set_password(
    conn: Conn,
    *,
    username: str,
    password: str,
    actor: str,
    within: Scope = EVERYTHING,
    address: str | None = None,
) -> UserRecord:
    """A new password (WeakPassword unless it meets the policy); the user's sessions are revoked."""
    current = get_user(conn, username=username, within=within)
    check_password_policy(password, username=current.username)
    db.update_password_hash(conn, user_id=current.user_id, password_hash=hash_password(password), changed=True)
    revoked = db.revoke_user_sessions(conn, current.user_id)
    record_audit(
        conn,
        actor=actor,
        action="user.password",
        target=_target(current.username),
        details={"sessions_revoked": revoked},
        address=address,
    )
    return get_user(conn, username=current.username)


def create_first_admin(conn: Conn, *, actor: str) -> str | None:
    """When nobody can log in yet, an all-scope admin `admin` with a generated password, which is returned (to be
    shown once); None when users exist."""
    if db.count_users(conn) > 0:
        return None
    password = generate_password()
    create_user(conn, username=FIRST_ADMIN, password=password, role="admin", display_name="Administrator", actor=actor)
    return password
