"""`ioc keys create|list|revoke`: machine API keys (the national center, integrations). Secrets are printed once."""

from __future__ import annotations

import argparse
from datetime import timedelta

from ioc.cli.database import command_database

ACTOR = "cli"


def scope_names(text: str | None) -> list[str] | None:
    """`a,b` → ["a", "b"]; unset or `all` → None (every one)."""
    if text is None or text.strip().lower() == "all":
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def scope_provinces(text: str | None) -> list[str] | None:
    """`--provinces`: `all`, or provinces by code or name, with or without diacritics (`Huế,can-tho,Sài Gòn`), as
    codes; an unknown one is refused with the closest names."""
    names = scope_names(text)
    if names is None:
        return None
    from devices.naming import resolve_province_code
    from devices.provinces import load_provinces

    provinces = load_provinces()
    return [resolve_province_code(provinces, name) for name in names]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="machine API keys: create (shown once), list, revoke")
    ksub = keys.add_subparsers(dest="keys_command", required=True)

    create = ksub.add_parser("create", help="create a key and print it once")
    create.add_argument("name", help="what the key is for, e.g. national-center")
    create.add_argument("--role", choices=("viewer", "operator", "admin"), default="viewer", help="default viewer")
    create.add_argument(
        "--provinces", default=None, help="comma-separated provinces, code or name (ioc provinces; default: all)"
    )
    create.add_argument("--sectors", default=None, help="comma-separated sectors (default: all)")
    create.add_argument("--days", type=float, default=90.0, help="days until it expires (default 90, at most 730)")
    create.set_defaults(func=cmd_create)

    lst = ksub.add_parser("list", help="every key with its role, scope and expiry (never the secret)")
    lst.set_defaults(func=cmd_list)

    revoke = ksub.add_parser("revoke", help="revoke a key; its next request is refused")
    revoke.add_argument("name", help="the key's name (ioc keys list)")
    revoke.set_defaults(func=cmd_revoke)


def cmd_create(args: argparse.Namespace) -> int:
    from api.access.keys import create_api_key
    from store.scope import Scope

    scope = Scope.of(provinces=scope_provinces(args.provinces), sectors=scope_names(args.sectors))
    with command_database() as conn:
        key = create_api_key(
            conn, name=args.name, role=args.role, scope=scope, lifetime=timedelta(days=args.days), actor=ACTOR
        )
    print(f"API key {args.name!r} ({args.role}, expires {key.record.expires_at:%Y-%m-%d}), shown once: {key.secret}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from api.access.keys import list_keys

    with command_database() as conn:
        for key in list_keys(conn):
            provinces, sectors = key.scope.as_arrays()
            state = "revoked" if key.revoked_at else f"expires {key.expires_at:%Y-%m-%d}"
            print(
                f"{key.name}\t{key.role}\tprovinces {','.join(provinces) if provinces else 'all'}\t"
                f"sectors {','.join(sectors) if sectors else 'all'}\t{state}"
            )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from api.access.keys import revoke_key

    with command_database() as conn:
        revoke_key(conn, name=args.name, actor=ACTOR)
    print(f"API key {args.name!r} revoked")
    return 0
