"""`ioc users create|list|update|disable|enable|reset-password`: people who log in to the API. A password never
travels on the command line (where `ps` and shell history would show it): it is typed at a prompt, read from
standard input with `--password-stdin`, or generated and printed once with `--generate-password`."""

from __future__ import annotations

import argparse
import getpass
import sys

from core.errors import InvalidRequest
from ioc.cli.database import command_database
from ioc.cli.keys import scope_names, scope_provinces

ACTOR = "cli"
ROLES = ("viewer", "operator", "admin")


def _add_password_source(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of standard input"
    )
    source.add_argument("--generate-password", action="store_true", help="generate a password and print it once")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = sub.add_parser("users", help="people who log in: create, list, update, disable, enable, reset-password")
    usub = users.add_subparsers(dest="users_command", required=True)

    # No abbreviations: `--password X` must not pass for `--password-stdin` (it is refused, as argv is no place
    # for a password).
    create = usub.add_parser(
        "create", help="create a user (the first admin: ioc users create NAME --role admin)", allow_abbrev=False
    )
    create.add_argument("username", help="the login name")
    create.add_argument("--role", choices=ROLES, default="viewer", help="default viewer")
    create.add_argument("--display-name", default="", help="the name people see, e.g. 'Nguyễn Văn An'")
    create.add_argument(
        "--provinces", default=None, help="comma-separated provinces, code or name (ioc provinces; default: all)"
    )
    create.add_argument("--sectors", default=None, help="comma-separated sectors (default: all)")
    _add_password_source(create)
    create.set_defaults(func=cmd_create)

    lst = usub.add_parser("list", help="every user with role, scope and state (never a password)")
    lst.set_defaults(func=cmd_list)

    update = usub.add_parser("update", help="change role, scope or display name (ends the user's sessions)")
    update.add_argument("username", help="the login name")
    update.add_argument("--role", choices=ROLES, default=None, help="the new role")
    update.add_argument("--display-name", default=None, help="the new name people see")
    update.add_argument("--provinces", default=None, help="comma-separated provinces, code or name, or 'all'")
    update.add_argument("--sectors", default=None, help="comma-separated sectors, or 'all'")
    update.set_defaults(func=cmd_update)

    disable = usub.add_parser("disable", help="refuse the user's logins and end their sessions at once")
    disable.add_argument("username", help="the login name")
    disable.set_defaults(func=cmd_disable)

    enable = usub.add_parser("enable", help="let a disabled user log in again")
    enable.add_argument("username", help="the login name")
    enable.set_defaults(func=cmd_enable)

    reset = usub.add_parser("reset-password", help="set a new password (ends the user's sessions)", allow_abbrev=False)
    reset.add_argument("username", help="the login name")
    _add_password_source(reset)
    reset.set_defaults(func=cmd_reset_password)


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated): from stdin, generated, or typed twice at a prompt."""
    from api.access.passwords import generate_password

    if args.generate_password:
        return generate_password(), True
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if not sys.stdin.isatty():
        raise InvalidRequest("no terminal to ask for the password: use --password-stdin or --generate-password")
    password = getpass.getpass(f"password for {args.username}: ")
    if getpass.getpass("again: ") != password:
        raise InvalidRequest("the two passwords differ")
    return password, False


def _scope_text(names: list[str] | None) -> str:
    return ",".join(names) if names is not None else "all"


def cmd_create(args: argparse.Namespace) -> int:
    from api.access.passwords import check_password_policy
    from api.access.users import check_username, create_user
    from store.scope import Scope

    username = check_username(args.username)
    password, generated = _read_password(args)
    check_password_policy(password, username=username)  # before starting a database for nothing
    with command_database() as conn:
        user = create_user(
            conn,
            username=username,
            password=password,
            role=args.role,
            scope=Scope.of(provinces=scope_provinces(args.provinces), sectors=scope_names(args.sectors)),
            display_name=args.display_name,
            actor=ACTOR,
        )
    print(f"user {user.username!r} created ({user.role})")
    if generated:
        print(f"password, shown once: {password}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from api.access.users import list_users

    with command_database() as conn:
        for user in list_users(conn):
            provinces, sectors = user.scope.as_arrays()
            state = f"disabled {user.disabled_at:%Y-%m-%d}" if user.disabled_at else "enabled"
            print(
                f"{user.username}\t{user.role}\tprovinces {_scope_text(provinces)}\tsectors {_scope_text(sectors)}\t"
                f"{state}\t{user.display_name}"
            )
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from api.access.users import UserChanges, get_user, update_user
    from store.scope import Scope

    with command_database() as conn:
        scope = None
        if args.provinces is not None or args.sectors is not None:
            current = get_user(conn, username=args.username).scope
            scope = Scope.of(
                provinces=scope_provinces(args.provinces) if args.provinces is not None else current.provinces,
                sectors=scope_names(args.sectors) if args.sectors is not None else current.sectors,
            )
        changes = UserChanges(display_name=args.display_name, role=args.role, scope=scope)
        user = update_user(conn, username=args.username, changes=changes, actor=ACTOR)
    provinces, sectors = user.scope.as_arrays()
    print(f"user {user.username!r}: {user.role}, provinces {_scope_text(provinces)}, sectors {_scope_text(sectors)}")
    return 0


def _set_disabled(username: str, *, disabled: bool) -> None:
    from api.access.users import UserChanges, update_user

    with command_database() as conn:
        update_user(conn, username=username, changes=UserChanges(disabled=disabled), actor=ACTOR)


def cmd_disable(args: argparse.Namespace) -> int:
    _set_disabled(args.username, disabled=True)
    print(f"user {args.username!r} disabled; their sessions have ended")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    _set_disabled(args.username, disabled=False)
    print(f"user {args.username!r} enabled")
    return 0


def cmd_reset_password(args: argparse.Namespace) -> int:
    from api.access.passwords import check_password_policy
    from api.access.users import normalize_username, set_password

    password, generated = _read_password(args)
    check_password_policy(password, username=normalize_username(args.username))
    with command_database() as conn:
        user = set_password(conn, username=args.username, password=password, actor=ACTOR)
    print(f"password of {user.username!r} set; their sessions have ended")
    if generated:
        print(f"password, shown once: {password}")
    return 0
