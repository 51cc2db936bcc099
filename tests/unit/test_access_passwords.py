"""The password policy (at least 12 characters, not the username), argon2id hashes and generated passwords."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from api.access.passwords import (
    PASSWORD_MAX_CHARS,
    PASSWORD_MIN_CHARS,
    WeakPassword,
    check_password_policy,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from core.errors import InvalidRequest


def test_a_password_of_twelve_characters_that_is_not_the_username_is_accepted() -> None:
    check_password_policy("correct-hors", username="alice")
    check_password_policy("x" * PASSWORD_MAX_CHARS, username="alice")


@pytest.mark.parametrize(
    ("password", "username", "rule"),
    [
        ("", "alice", "at least 12 characters"),
        ("eleven-char", "alice", "at least 12 characters"),
        ("x" * (PASSWORD_MAX_CHARS + 1), "alice", "at most 1024 characters"),
        ("operator.lan", "operator.lan", "must not be the username"),
        ("Operator.LAN", "operator.lan", "must not be the username"),
        (" operator.lan ", "operator.lan", "must not be the username"),
    ],
)
def test_a_password_that_breaks_a_rule_is_refused_naming_the_rule(password: str, username: str, rule: str) -> None:
    with pytest.raises(WeakPassword, match=rule):
        check_password_policy(password, username=username)


def test_a_weak_password_is_an_invalid_request_for_the_api() -> None:
    assert issubclass(WeakPassword, InvalidRequest)
    assert PASSWORD_MIN_CHARS == 12


def test_a_hash_is_argon2id_verifies_only_its_password_and_holds_no_clear_text() -> None:
    stored = hash_password("mật khẩu đủ dài")
    assert stored.startswith("$argon2id$")
    assert "mật khẩu" not in stored
    assert verify_password(stored, "mật khẩu đủ dài")
    assert not verify_password(stored, "mật khẩu đủ dài ")
    assert not verify_password("not a hash", "mật khẩu đủ dài")
    assert not needs_rehash(stored)


def test_a_hash_made_with_weaker_parameters_is_marked_for_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("correct horse battery")
    assert verify_password(weak, "correct horse battery")
    assert needs_rehash(weak)


def test_generated_passwords_meet_the_policy_and_differ() -> None:
    passwords = {generate_password() for _ in range(20)}
    assert len(passwords) == 20
    for password in passwords:
        check_password_policy(password, username="admin")
        assert len(password) == 24
