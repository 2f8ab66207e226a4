"""Account password hashing through passlib (the maintained `libpass` distribution)."""

from __future__ import annotations

from passlib.context import CryptContext

# PBKDF2-SHA256 needs nothing beyond the standard library; the crypt schemes are accepted as
# hashes an operator may already have, never produced.
_CONTEXT = CryptContext(
    schemes=["pbkdf2_sha256", "sha512_crypt", "sha256_crypt"],
    default="pbkdf2_sha256",
)

# Verified against for unknown users, so that an unknown name costs as much as a wrong password.
# A constant rather than hashed at import, which cost every start one hash (~20 ms); a test
# checks that it has the default scheme's rounds, hence the cost of a real verification.
_DUMMY_HASH = (
    "$pbkdf2-sha256$29000$J0To/Z8zJoRwztn7fy8lRA$uuOJbSbLN2lr8JVCeZcYienEePcDt0Wu0wKYT9jDya4"
)


def hash_password(password: str) -> str:
    """A salted hash of `password`."""
    return str(_CONTEXT.hash(password))


def is_password_hash(value: str) -> bool:
    """Whether `value` is a hash in one of the accepted schemes."""
    return _CONTEXT.identify(value) is not None


def verify_password(password: str, password_hash: str) -> bool:
    """Whether `password` matches `password_hash`; false for a malformed hash."""
    try:
        return bool(_CONTEXT.verify(password, password_hash))
    except ValueError:
        return False


def burn_verification(password: str) -> None:
    """Spend the time of one verification without an account behind it."""
    _CONTEXT.verify(password, _DUMMY_HASH)
