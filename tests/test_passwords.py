"""The process-wide password memo: a password is hashed once, a verified pair not verified again."""

from __future__ import annotations

import pytest

from analytics_mock import passwords
from analytics_mock.passwords import hash_password, is_password_hash, verify_password


def test_a_password_is_hashed_once_per_process() -> None:
    first = hash_password("memo-once")
    assert hash_password("memo-once") == first
    assert hash_password("memo-other") != first
    assert verify_password("memo-once", first)


def test_a_verified_pair_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = passwords._CONTEXT.hash("memo-verified")  # made elsewhere: not in the memo
    assert verify_password("memo-verified", stored)

    def refuse(*_args: object) -> bool:
        raise AssertionError("verified again")

    monkeypatch.setattr(passwords._CONTEXT, "verify", refuse)
    assert verify_password("memo-verified", stored)
    # Anything else still goes through the real verification.
    with pytest.raises(AssertionError, match="verified again"):
        verify_password("memo-wrong", stored)


def test_a_wrong_password_is_never_remembered() -> None:
    stored = hash_password("memo-right")
    for _ in range(2):
        assert not verify_password("memo-wrong", stored)
    assert not verify_password("memo-right", stored.replace("$pbkdf2", "$broken"))


def test_a_hash_is_accepted_only_when_it_parses() -> None:
    made = hash_password("well-formed")
    assert is_password_hash(made)
    assert is_password_hash("$5$salt$" + "a" * 43)
    # The scheme's prefix alone is not enough: such a hash would lock its user out for good.
    assert not is_password_hash(made[:-10])
    assert not is_password_hash("$pbkdf2-sha256$29000$not-base64!$xyz")
    assert not is_password_hash("$6$rounds=5000$salt$short")
    assert not is_password_hash("plain words")
    for digestless in ("$pbkdf2-sha256$29000$ZZTOPHASHabc$", "$pbkdf2-sha256$29000$$", "$6$$"):
        assert not is_password_hash(digestless)
