"""The rules for the scope given to a user or key: known province codes and sectors only, and never wider than the
scope of the admin who gives it. Pure functions; `check_scope_codes` takes the province codes the database knows."""

from __future__ import annotations

from collections.abc import Collection

from core.errors import Forbidden, InvalidRequest
from protocol.topics import SECTORS
from store.scope import Scope


def check_scope_codes(scope: Scope, *, known_provinces: Collection[str]) -> None:
    """Raise InvalidRequest for an unknown province or sector, or an empty list (leave it unset to mean all)."""
    for what, given, known in (("province", scope.provinces, known_provinces), ("sector", scope.sectors, SECTORS)):
        if given is None:
            continue
        if not given:
            raise InvalidRequest(f"name at least one {what}, or leave {what}s unset for every {what}")
        unknown = sorted(set(given) - set(known))
        if unknown:
            names = ", ".join(repr(code) for code in unknown)
            hint = (
                "a province is named by its code, e.g. 'can-tho'" if what == "province" else f"use {', '.join(SECTORS)}"
            )
            raise InvalidRequest(f"unknown {what}{'s' if len(unknown) > 1 else ''} {names}: {hint}")


def scope_covers(outer: Scope, inner: Scope) -> bool:
    """True when everything `inner` allows, `outer` allows too."""
    return all(
        out is None or (inn is not None and inn <= out)
        for out, inn in ((outer.provinces, inner.provinces), (outer.sectors, inner.sectors))
    )


def check_within(granted: Scope, *, actor_scope: Scope, actor: str) -> None:
    """Raise Forbidden when `granted` reaches outside the scope of the admin who grants it."""
    if not scope_covers(actor_scope, granted):
        raise Forbidden(
            f"{actor} may give only a scope within its own ({describe_scope(actor_scope)}), "
            f"not {describe_scope(granted)}"
        )


def describe_scope(scope: Scope) -> str:
    """`provinces an-giang,can-tho; sectors all`."""
    provinces, sectors = scope.as_arrays()
    return (
        f"provinces {','.join(provinces) if provinces is not None else 'all'}; "
        f"sectors {','.join(sectors) if sectors is not None else 'all'}"
    )
