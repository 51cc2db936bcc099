"""The scope given to a user or key: known provinces and sectors only, never an empty list, and never wider than
the scope of the admin who gives it."""

from __future__ import annotations

import pytest

from api.access.scopes import check_scope_codes, check_within, describe_scope, scope_covers
from core.errors import Forbidden, InvalidRequest
from store.scope import EVERYTHING, Scope

KNOWN = {"can-tho", "an-giang", "ha-noi"}


@pytest.mark.parametrize(
    "scope",
    [
        EVERYTHING,
        Scope.of(provinces=["can-tho"]),
        Scope.of(provinces=["can-tho", "ha-noi"], sectors=["energy", "health"]),
        Scope.of(sectors=["agriculture", "energy", "transport", "health"]),
    ],
)
def test_known_provinces_and_sectors_are_accepted(scope: Scope) -> None:
    check_scope_codes(scope, known_provinces=KNOWN)


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        (Scope.of(provinces=["sai-gon"]), "unknown province 'sai-gon'"),
        (Scope.of(provinces=["can-tho", "sai-gon", "hue-x"]), "unknown provinces 'hue-x', 'sai-gon'"),
        (Scope.of(sectors=["mining"]), "unknown sector 'mining': use agriculture, energy, transport, health"),
        (Scope.of(sectors=["Energy"]), "unknown sector 'Energy'"),
        (Scope.of(provinces=[]), "name at least one province, or leave provinces unset"),
        (Scope.of(sectors=[]), "name at least one sector, or leave sectors unset"),
    ],
)
def test_an_unknown_code_or_an_empty_list_is_refused_by_name(scope: Scope, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_scope_codes(scope, known_provinces=KNOWN)


@pytest.mark.parametrize(
    ("outer", "inner", "covers"),
    [
        (EVERYTHING, EVERYTHING, True),
        (EVERYTHING, Scope.of(provinces=["can-tho"]), True),
        (Scope.of(provinces=["can-tho"]), Scope.of(provinces=["can-tho"]), True),
        (Scope.of(provinces=["can-tho", "ha-noi"]), Scope.of(provinces=["ha-noi"], sectors=["energy"]), True),
        (Scope.of(provinces=["can-tho"]), Scope.of(provinces=["ha-noi"]), False),
        (Scope.of(provinces=["can-tho"]), Scope.of(provinces=["can-tho", "ha-noi"]), False),
        # every province is more than one province
        (Scope.of(provinces=["can-tho"]), EVERYTHING, False),
        (Scope.of(provinces=["can-tho"]), Scope.of(sectors=["energy"]), False),
        (Scope.of(sectors=["energy"]), Scope.of(provinces=["can-tho"], sectors=["energy"]), True),
        (Scope.of(sectors=["energy"]), Scope.of(provinces=["can-tho"]), False),
    ],
)
def test_a_scope_covers_another_when_it_allows_everything_the_other_allows(
    outer: Scope, inner: Scope, covers: bool
) -> None:
    assert scope_covers(outer, inner) is covers


def test_an_admin_may_not_grant_beyond_their_own_scope() -> None:
    admin_scope = Scope.of(provinces=["can-tho"])
    check_within(Scope.of(provinces=["can-tho"], sectors=["health"]), actor_scope=admin_scope, actor="user:tho")
    with pytest.raises(Forbidden) as refused:
        check_within(Scope.of(provinces=["ha-noi"]), actor_scope=admin_scope, actor="user:tho")
    assert str(refused.value) == (
        "user:tho may give only a scope within its own (provinces can-tho; sectors all), "
        "not provinces ha-noi; sectors all"
    )


def test_a_scope_is_described_with_all_for_unset_parts() -> None:
    assert describe_scope(EVERYTHING) == "provinces all; sectors all"
    assert describe_scope(Scope.of(provinces=["ha-noi", "can-tho"], sectors=["energy"])) == (
        "provinces can-tho,ha-noi; sectors energy"
    )
