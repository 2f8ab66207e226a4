"""Authentication rules: Basic and HSSO tokens, the account lock, and the credentials cache.

Authentication happens in two steps so that the common case writes nothing: `identify` reads
and decides, `record` applies the few writes a decision needs (a failure count, a new or
touched session), each in a unit of work the caller owns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from analytics_mock.db.models import UserRow
from analytics_mock.db.repositories import SessionRepository, UserRepository
from analytics_mock.errors import AuthenticationFailed, PermissionDenied
from analytics_mock.passwords import burn_verification, verify_password

ADMIN = "Admin"
PERMISSIONS: tuple[str, ...] = ("Admin", "Modify", "StorageOps", "UserManagement")
SYSTEM_USER = "system"

# A session's last use is written at most this often, so a busy client does not turn every
# read into a write; expiry is therefore exact to within this many seconds.
_TOUCH_INTERVAL = 1.0
_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Principal:
    """Who is calling, with what permissions, and the HSSO token to hand back."""

    name: str
    permissions: frozenset[str]
    token: str = field(repr=False)

    def require(self, permission: str) -> None:
        """Raise 403 unless the principal holds `permission`."""
        if permission not in self.permissions:
            raise PermissionDenied("The user does not have the permission for this operation.")


@dataclass
class Decision:
    """The outcome of `identify`: a principal or a failure, and what must be written."""

    principal: Principal | None = None
    count_failure_for: str | None = None
    clear_failures_for: str | None = None
    new_session: tuple[str, str] | None = None  # (token hash, user name)
    touch_session: str | None = None
    expire_session: str | None = None

    @property
    def needs_write(self) -> bool:
        """Whether `record` has anything to do."""
        return any(
            (
                self.count_failure_for,
                self.clear_failures_for,
                self.new_session,
                self.touch_session,
                self.expire_session,
            )
        )


def token_digest(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored; the token itself never is."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_permissions(text: str) -> frozenset[str]:
    """The permission set stored as comma-separated text."""
    return frozenset(p for p in text.split(",") if p)


class Authenticator:
    """Decides who a request is; keeps per-process caches that hold no plaintext password."""

    def __init__(self, *, lock_after: int, lock_system: bool, session_timeout: float) -> None:
        self.lock_after = lock_after
        self.lock_system = lock_system
        self.session_timeout = session_timeout
        # Keyed by an HMAC of name and password under a per-process random key: a cache dump
        # shows no password and cannot be brute-forced offline without that key.
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, str] = OrderedDict()
        # Basic clients reuse one token per credential and process instead of a row per request.
        self._basic_tokens: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def identify(self, session: Session, authorization: str | None, now: float) -> Decision:
        """Read what is needed to accept or refuse the `Authorization` header."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "basic" and credentials:
            return self._basic(session, credentials, now)
        if scheme.lower() == "hsso" and credentials:
            return self._hsso(session, credentials, now)
        return Decision()

    def record(self, session: Session, decision: Decision, now: float) -> None:
        """Apply the writes that `identify` asked for."""
        users = UserRepository(session)
        sessions = SessionRepository(session)
        if decision.count_failure_for:
            users.record_failure(decision.count_failure_for, self._lock_threshold(decision))
        if decision.clear_failures_for:
            users.clear_failures(decision.clear_failures_for)
        if decision.expire_session:
            sessions.delete(decision.expire_session)
        if decision.touch_session:
            sessions.touch(decision.touch_session, now)
        if decision.new_session:
            # Opening a session is the moment to bound the table: idle ones go.
            sessions.purge_idle(now - self.session_timeout)
            token_hash, user_name = decision.new_session
            sessions.add(token_hash, user_name, now)

    def principal_or_raise(self, decision: Decision) -> Principal:
        """The principal of a successful decision; 401 otherwise."""
        if decision.principal is None:
            raise AuthenticationFailed()
        return decision.principal

    def _lock_threshold(self, decision: Decision) -> int:
        if decision.count_failure_for == SYSTEM_USER and not self.lock_system:
            return 0
        return self.lock_after

    def _counts_failures(self, name: str) -> bool:
        return self.lock_after > 0 and (name != SYSTEM_USER or self.lock_system)

    def _basic(self, session: Session, credentials: str, now: float) -> Decision:  # noqa: PLR0911
        try:
            raw = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return Decision()
        name_bytes, colon, password_bytes = raw.partition(b":")
        if not colon:
            return Decision()
        try:
            name = name_bytes.decode()
            password = password_bytes.decode()
        except UnicodeDecodeError:
            return Decision()
        # No account name holds a control character (PostgreSQL refuses NUL in a query).
        if not name or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
            burn_verification(password)
            return Decision()
        user = UserRepository(session).get(name)
        if user is None:
            burn_verification(password)
            return Decision()
        cache_key = hmac.digest(self._key, name_bytes + b"\0" + password_bytes, "sha256")
        if not self._password_ok(cache_key, password, user.password_hash):
            return Decision(count_failure_for=name if self._counts_failures(name) else None)
        if user.locked:
            return Decision()
        decision = Decision(clear_failures_for=name if user.failed_logins else None)
        token = self._reusable_token(session, cache_key, now, decision)
        if token is None:
            token = secrets.token_urlsafe(32)
            decision.new_session = (token_digest(token), name)
            with self._lock:
                self._basic_tokens[cache_key] = token
                self._trim(self._basic_tokens)
        decision.principal = self._principal(user, token)
        return decision

    def _hsso(self, session: Session, token: str, now: float) -> Decision:
        digest = token_digest(token)
        row = SessionRepository(session).get(digest)
        if row is None:
            return Decision()
        if now - row.last_used_at > self.session_timeout:
            return Decision(expire_session=digest)
        user = UserRepository(session).get(row.user_name)
        if user is None or user.locked:
            return Decision()
        decision = Decision(principal=self._principal(user, token))
        if now - row.last_used_at >= _TOUCH_INTERVAL:
            decision.touch_session = digest
        return decision

    def _reusable_token(
        self, session: Session, cache_key: bytes, now: float, decision: Decision
    ) -> str | None:
        with self._lock:
            token = self._basic_tokens.get(cache_key)
        if token is None:
            return None
        row = SessionRepository(session).get(token_digest(token))
        if row is None or now - row.last_used_at > self.session_timeout:
            return None
        if now - row.last_used_at >= _TOUCH_INTERVAL:
            decision.touch_session = row.token_hash
        return token

    def _password_ok(self, cache_key: bytes, password: str, password_hash: str) -> bool:
        # A hit counts only while the stored hash is the one verified, so a changed password
        # misses at once; the lock is checked from the database on every request.
        with self._lock:
            if self._verified.get(cache_key) == password_hash:
                self._verified.move_to_end(cache_key)
                return True
        if not verify_password(password, password_hash):
            return False
        with self._lock:
            self._verified[cache_key] = password_hash
            self._trim(self._verified)
        return True

    @staticmethod
    def _trim(cache: OrderedDict[bytes, str]) -> None:
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)

    @staticmethod
    def _principal(user: UserRow, token: str) -> Principal:
        return Principal(user.name, parse_permissions(user.permissions), token)
