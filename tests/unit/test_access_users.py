"""Usernames (case-insensitive, a safe alphabet) and display names (no control characters)."""

from __future__ import annotations

import pytest

from api.access.users import check_display_name, check_role, check_username, normalize_username
from core.errors import InvalidRequest


@pytest.mark.parametrize(
    ("given", "stored"),
    [("alice", "alice"), ("  Alice ", "alice"), ("tho.nguyen_2", "tho.nguyen_2"), ("a" * 64, "a" * 64)],
)
def test_a_username_is_stored_lowercase_and_trimmed(given: str, stored: str) -> None:
    assert check_username(given) == stored
    assert normalize_username(given) == stored


@pytest.mark.parametrize("bad", ["", " ", "-alice", ".alice", "a" * 65, "an toàn", "alice\x00", "a/b", "ali ce"])
def test_a_username_outside_the_alphabet_is_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="a username has 1 to 64 characters"):
        check_username(bad)


def test_a_display_name_keeps_vietnamese_letters_and_refuses_control_characters() -> None:
    assert check_display_name("  Nguyễn Văn An ") == "Nguyễn Văn An"
    with pytest.raises(InvalidRequest, match="no control characters"):
        check_display_name("An\x00")
    with pytest.raises(InvalidRequest, match="at most 200 characters"):
        check_display_name("x" * 201)


def test_a_role_is_one_of_the_three() -> None:
    for role in ("viewer", "operator", "admin"):
        check_role(role)
    with pytest.raises(InvalidRequest, match="unknown role 'root': use one of viewer, operator, admin"):
        check_role("root")
