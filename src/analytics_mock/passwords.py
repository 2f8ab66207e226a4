"""Account password hashing through passlib (the maintained `libpass` distribution)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from typing import TypeVar

from passlib.context import CryptContext

# PBKDF2-SHA256 needs nothing beyond the standard library; the crypt schemes are accepted as
# hashes an operator may already have, never produced. A hash of another scheme or cost is
# replaced at the account's first login (`verify_and_update`), so that logins cost the same.
_ROUNDS = 29_000
_CONTEXT = CryptContext(
    schemes=["pbkdf2_sha256", "sha512_crypt", "sha256_crypt"],
    default="pbkdf2_sha256",
    deprecated="auto",
    pbkdf2_sha256__default_rounds=_ROUNDS,
    pbkdf2_sha256__min_rounds=_ROUNDS,
    pbkdf2_sha256__max_rounds=_ROUNDS,
)

# Verified against for unknown users, so that an unknown name costs as much as a wrong password.
# A constant rather than hashed at import, which cost every start one hash (~20 ms); a test
# checks that it has the default scheme's rounds, hence the cost of a real verification.
_DUMMY_HASH = (
    "$pbkdf2-sha256$29000$J0To/Z8zJoRwztn7fy8lRA$uuOJbSbLN2lr8JVCeZcYienEePcDt0Wu0wKYT9jDya4"
)


# A hash costs tens of milliseconds by design, and an emulator built per test would otherwise
# hash `manager` and verify it again on its first call. So this process hashes a password once
# and remembers the (password, hash) pairs it made or verified. Keys are HMACs under a random
# per-process key: the memo holds no password and cannot be searched offline.
K = TypeVar("K")
V = TypeVar("V")
_MEMO_SIZE = 4096
_MEMO_KEY = secrets.token_bytes(32)
_memo_lock = threading.Lock()
_hashes: OrderedDict[bytes, str] = OrderedDict()
_verified: OrderedDict[tuple[bytes, str], None] = OrderedDict()


def _key(password: str) -> bytes:
    return hmac.digest(_MEMO_KEY, password.encode("utf-8", "surrogatepass"), hashlib.sha256)


def _remember(memo: OrderedDict[K, V], key: K, value: V) -> None:
    memo[key] = value
    memo.move_to_end(key)
    while len(memo) > _MEMO_SIZE:
        memo.popitem(last=False)


def hash_password(password: str) -> str:
    """A salted hash of `password` (the same one for the same password within this process)."""
    key = _key(password)
    with _memo_lock:
        known = _hashes.get(key)
    if known is not None:
        return known
    made = str(_CONTEXT.hash(password))
    with _memo_lock:
        _remember(_hashes, key, made)
        _remember(_verified, (key, made), None)
    return made


def is_password_hash(value: str) -> bool:
    """Whether `value` is a well-formed hash in one of the accepted schemes."""
    handler = _CONTEXT.identify(value, resolve=True)
    if handler is None:
        return False
    try:
        # A prefix alone identifies a scheme; a hash that does not parse, or a configuration
        # string without its digest, would lock its user out.
        parsed = handler.from_string(value)
    except (ValueError, TypeError):
        return False
    return bool(parsed.checksum)


def verify_password(password: str, password_hash: str, *, memo: bool = True) -> bool:
    """Whether `password` matches `password_hash`; false for a malformed hash.

    `memo=False` verifies in full even a pair verified before (a locked account must take the
    time of a wrong password's verification).
    """
    pair = (_key(password), password_hash)
    with _memo_lock:
        if memo and pair in _verified:
            _verified.move_to_end(pair)
            return True
    try:
        ok = bool(_CONTEXT.verify(password, password_hash))
    except ValueError:
        return False
    if ok:
        with _memo_lock:
            _remember(_verified, pair, None)
    return ok


def verify_and_update(
    password: str, password_hash: str, *, memo: bool = True, upgrade: bool = True
) -> tuple[bool, str | None]:
    """`verify_password`, and a hash to store in place of `password_hash`, or None.

    The replacement has the default scheme and cost, made when `password_hash` has another (an
    operator's sha512_crypt) and `upgrade` is true.
    """
    if not verify_password(password, password_hash, memo=memo):
        return False, None
    if not upgrade or not _CONTEXT.needs_update(password_hash):
        return True, None
    return True, hash_password(password)


def burn_verification(password: str) -> None:
    """Spend the time of one verification without an account behind it."""
    _CONTEXT.verify(password, _DUMMY_HASH)
