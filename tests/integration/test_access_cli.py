"""`ioc users …` and `ioc keys …` against a real database: passwords come from standard input or are generated
(never from argv), the first admin is made on the command line, and the demo's first admin is made only once."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import psycopg

from api.access.passwords import verify_password
from api.access.users import create_first_admin
from store.access import find_password_hash
from tests.integration.conftest import ScratchDatabase


@dataclass(frozen=True, slots=True)
class Done:
    code: int
    out: str
    err: str


def _ioc(database: ScratchDatabase, argv: list[str], *, stdin: str = "") -> Done:
    """`ioc …` as a user types it, against this test's database."""
    done = subprocess.run(
        [sys.executable, "-m", "ioc", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "IOC_DATABASE_URL": database.url},
    )
    return Done(done.returncode, done.stdout, done.stderr)


def _verifies(database: ScratchDatabase, username: str, password: str) -> bool:
    with psycopg.connect(database.url) as conn:
        found = find_password_hash(conn, username)
    return found is not None and verify_password(found[1], password)


def _refused(done: Done) -> str:
    """The message of a command that failed as `ioc` reports an error (exit 2, `ioc: …` last on stderr)."""
    assert done.code == 2, done
    last = done.err.strip().splitlines()[-1]
    assert last.startswith("ioc: "), done.err
    return last.removeprefix("ioc: ")


def test_users_are_managed_from_the_command_line_without_a_password_in_argv(database: ScratchDatabase) -> None:
    first = _ioc(
        database, ["users", "create", "Admin", "--role", "admin", "--password-stdin"], stdin="first-admin-pw\n"
    )
    assert (first.code, first.out) == (0, "user 'admin' created (admin)\n"), first
    assert _verifies(database, "admin", "first-admin-pw")

    made = _ioc(
        database,
        ["users", "create", "lan", "--provinces", "can-tho,an-giang", "--sectors", "health", "--generate-password"],
    )
    assert made.code == 0, made
    out = made.out.splitlines()
    assert out[0] == "user 'lan' created (viewer)"
    generated = out[1].removeprefix("password, shown once: ")
    assert _verifies(database, "lan", generated)

    update = _ioc(
        database, ["users", "update", "lan", "--role", "operator", "--provinces", "all", "--display-name", "Lan"]
    )
    assert update.out == "user 'lan': operator, provinces all, sectors health\n", update
    assert _ioc(database, ["users", "disable", "lan"]).code == 0
    reset = _ioc(database, ["users", "reset-password", "lan", "--password-stdin"], stdin="a-new-password-for-lan\n")
    assert reset.code == 0, reset
    assert _verifies(database, "lan", "a-new-password-for-lan")
    listed = _ioc(database, ["users", "list"]).out.splitlines()
    assert listed[0] == "admin\tadmin\tprovinces all\tsectors all\tenabled\t"
    assert listed[1].startswith("lan\toperator\tprovinces all\tsectors health\tdisabled ")
    assert listed[1].endswith("\tLan")
    assert _ioc(database, ["users", "enable", "lan"]).code == 0
    assert database.scalar("SELECT disabled_at FROM users WHERE username = 'lan'") is None

    actions = database.scalar("SELECT array_agg(action ORDER BY id) FROM audit_log WHERE actor = 'cli'")
    assert actions == ["user.create", "user.create", "user.update", "user.disable", "user.password", "user.enable"]
    details = str(database.scalar("SELECT json_agg(details)::text FROM audit_log"))
    assert "first-admin-pw" not in details
    assert generated not in details


def test_a_password_is_never_an_argument_and_bad_ones_are_refused(database: ScratchDatabase) -> None:
    on_argv = _ioc(database, ["users", "create", "lan", "--password", "secret-on-argv"])
    assert on_argv.code == 2
    assert "unrecognized arguments: --password" in on_argv.err
    no_terminal = _refused(_ioc(database, ["users", "create", "lan"]))
    assert no_terminal == "no terminal to ask for the password: use --password-stdin or --generate-password"
    short = _ioc(database, ["users", "create", "lan", "--password-stdin"], stdin="short\n")
    assert _refused(short) == "a password needs at least 12 characters"
    same = _ioc(database, ["users", "create", "lan.nguyen.2026", "--password-stdin"], stdin="Lan.Nguyen.2026\n")
    assert _refused(same) == "a password must not be the username"
    province = _ioc(database, ["users", "create", "lan", "--provinces", "Atlantis", "--generate-password"])
    assert _refused(province).startswith("unknown province 'Atlantis'")
    assert _refused(_ioc(database, ["users", "disable", "nobody"])) == "no user named 'nobody'"
    assert database.scalar("SELECT count(*) FROM users") == 0


def test_keys_are_created_listed_and_revoked_from_the_command_line(database: ScratchDatabase) -> None:
    # provinces by code or by name, with or without diacritics, old names included (Sài Gòn)
    made = _ioc(database, ["keys", "create", "national-center", "--provinces", "Hà Nội,sai gon", "--days", "30"])
    assert made.code == 0, made
    secret = made.out.strip().rsplit(" ", 1)[1]
    assert secret.startswith("ioc_k_")
    listed = _ioc(database, ["keys", "list"]).out
    assert listed.startswith("national-center\tviewer\tprovinces ha-noi,ho-chi-minh\tsectors all\texpires ")
    assert secret not in listed
    assert _ioc(database, ["keys", "revoke", "national-center"]).code == 0
    assert database.scalar("SELECT revoked_at IS NOT NULL FROM api_keys WHERE name = 'national-center'")
    assert _refused(_ioc(database, ["keys", "create", "x", "--sectors", "mining"])).startswith(
        "unknown sector 'mining'"
    )


def test_the_demo_makes_a_first_admin_only_when_nobody_can_log_in(database: ScratchDatabase) -> None:
    with psycopg.connect(database.url) as conn:
        password = create_first_admin(conn, actor="ioc demo")
        again = create_first_admin(conn, actor="ioc demo")
        conn.commit()
    assert password is not None
    assert again is None
    assert _verifies(database, "admin", password)
    assert database.scalar("SELECT role FROM users WHERE username = 'admin'") == "admin"
    assert database.scalar("SELECT provinces IS NULL AND sectors IS NULL FROM users WHERE username = 'admin'")
