"""Authentication rules: Basic and HSSO tokens, the account lock, and the credentials cache.

A call reads what it needs in one unit of database work and decides on the event loop; the few
writes a decision needs (a failure count, a new or touched session) go in a second unit, so the
common case writes nothing. A password is verified off the event loop, and only on a miss of
the verified-credentials cache.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from analytics_mock.db.engine import Database
from analytics_mock.db.repositories import (
    AnyRow,
    ControlRepository,
    Executor,
    SessionRepository,
    UserRepository,
)
from analytics_mock.errors import AuthenticationFailed, PermissionDenied
from analytics_mock.formats import CONTROL_CHARACTER
from analytics_mock.passwords import burn_verification, verify_and_update

T = TypeVar("T")

ADMIN = "Admin"
PERMISSIONS: tuple[str, ...] = ("Admin", "Modify", "StorageOps", "UserManagement")
SYSTEM_USER = "system"

# A session's last use is written at most this often, so a busy client does not turn every
# read into a write; expiry is therefore exact to within this many seconds.
_TOUCH_INTERVAL = 1.0
_CACHE_SIZE = 4096
# passlib refuses (ValueError) a password longer than this before hashing it. Such a password
# is a wrong one like any other: same 401, and the time of one verification spent.
MAX_PASSWORD_BYTES = 4096


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
    # (name, stored hash, its replacement): an operator hash upgraded to the default scheme.
    upgrade_hash: tuple[str, str, str] | None = None
    # An unknown account's failure writes as much as a known one's, so neither the time nor
    # the fsync of the lock's bookkeeping tells which names exist.
    pretend_failure: bool = False

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
                self.upgrade_hash,
                self.pretend_failure,
            )
        )


def _too_long(password: str) -> bool:
    return len(password) * 4 > MAX_PASSWORD_BYTES and len(password.encode()) > MAX_PASSWORD_BYTES


def _burn(password: str) -> None:
    """Spend one verification's time on `password`, cut to a length passlib takes."""
    if _too_long(password):
        password = password.encode()[:MAX_PASSWORD_BYTES].decode(errors="ignore")
    burn_verification(password)


def token_digest(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored; the token itself never is."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_permissions(text: str) -> frozenset[str]:
    """The permission set stored as comma-separated text."""
    return frozenset(p for p in text.split(",") if p)


@dataclass(frozen=True)
class BasicCredentials:
    """A decoded Basic header; `cache_key` is an HMAC of name and password under a process key."""

    name: str
    password: str = field(repr=False)
    cache_key: bytes = field(repr=False)


@dataclass(frozen=True)
class HssoToken:
    """An HSSO session token and the digest it is stored under."""

    token: str = field(repr=False)
    digest: str


@dataclass(frozen=True)
class Unusable:
    """A header that names no account; the password it carried still costs a verification."""

    password: str | None = field(default=None, repr=False)


Credentials = BasicCredentials | HssoToken | Unusable
# The account and session rows that decide a call (either may be missing).
Facts = tuple[AnyRow | None, AnyRow | None]


@dataclass(frozen=True)
class FactsPlan:
    """What authenticating one `Authorization` header reads: the unit, and the key to share it."""

    credentials: Credentials
    token: str | None = field(default=None, repr=False)  # a Basic credential's reusable token
    unit: Callable[[Executor], Facts] | None = None
    key: Hashable = None


def _basic_facts(
    session: Executor, name: str, token_hash: str | None
) -> tuple[AnyRow | None, AnyRow | None]:
    user = UserRepository(session).credentials(name)
    row = SessionRepository(session).get(token_hash) if token_hash and user else None
    return user, row


def _hsso_facts(session: Executor, digest: str) -> tuple[AnyRow | None, AnyRow | None]:
    row = SessionRepository(session).get(digest)
    user = UserRepository(session).credentials(row.user_name) if row is not None else None
    return user, row


class Authenticator:
    """Decides who a request is; keeps per-process caches that hold no plaintext password."""

    def __init__(
        self,
        *,
        lock_after: int,
        lock_system: bool,
        session_timeout: float,
        verifications: int = 2,
    ) -> None:
        self.lock_after = lock_after
        # Password verifications (PBKDF2, ~20 ms of CPU each) that may run at once; the rest
        # wait without CPU, so a flood of logins leaves the cores to calls already verified.
        self._verifying = threading.BoundedSemaphore(verifications)
        self.lock_system = lock_system
        self.session_timeout = session_timeout
        # Keyed by an HMAC of name and password under a per-process random key: a cache dump
        # shows no password and cannot be brute-forced offline without that key.
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, str] = OrderedDict()
        # Basic clients reuse one token per credential and process instead of a row per request.
        self._basic_tokens: OrderedDict[bytes, str] = OrderedDict()
        # When this process last asked to mark a session used, by token hash.
        self._touched: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def plan(self, authorization: str | None) -> FactsPlan:
        """What authenticating this header will read; no database work yet."""
        credentials = self.parse(authorization)
        if isinstance(credentials, BasicCredentials):
            token = self._reusable(credentials.cache_key)
            token_hash = token_digest(token) if token else None
            unit = partial(_basic_facts, name=credentials.name, token_hash=token_hash)
            return FactsPlan(credentials, token, unit, ("basic", credentials.name, token_hash))
        if isinstance(credentials, HssoToken):
            unit = partial(_hsso_facts, digest=credentials.digest)
            return FactsPlan(credentials, None, unit, ("hsso", credentials.digest))
        return FactsPlan(credentials)

    async def authenticate(
        self,
        db: Database,
        authorization: str | None,
        now: float,
        *,
        read: tuple[FactsPlan, Facts | None] | None = None,
    ) -> Principal:
        """The caller of a request with this `Authorization` header; 401 when there is none.

        `read`: this header's plan and the facts its unit already read, if a caller read them.
        """
        plan, facts = read if read is not None else (self.plan(authorization), None)
        credentials = plan.credentials
        if plan.unit is not None and facts is None:
            # Concurrent calls of one account share a read that starts after they all came.
            facts = await db.read(plan.unit, share=plan.key)
        if isinstance(credentials, BasicCredentials):
            assert facts is not None
            user, row = facts
            decision = await self._decide_basic(credentials, user, plan.token, row, now)
        elif isinstance(credentials, HssoToken):
            assert facts is not None
            user, row = facts
            decision = self._decide_hsso(credentials, user, row, now)
        else:
            if credentials.password is not None:
                await self._verify(_burn, credentials.password)
            decision = Decision()
        if decision.needs_write:
            await db.write(partial(self.record, decision=decision, now=now))
        return self.principal_or_raise(decision)

    def parse(self, authorization: str | None) -> Credentials:  # noqa: PLR0911
        """What the `Authorization` header carries."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "hsso" and credentials:
            return HssoToken(credentials, token_digest(credentials))
        if scheme.lower() != "basic" or not credentials:
            return Unusable()
        try:
            raw = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return Unusable()
        name_bytes, colon, password_bytes = raw.partition(b":")
        if not colon:
            return Unusable()
        try:
            name = name_bytes.decode()
            password = password_bytes.decode()
        except UnicodeDecodeError:
            return Unusable()
        # No account name holds a control character (PostgreSQL refuses NUL in a query).
        if not name or CONTROL_CHARACTER.search(name):
            return Unusable(password)
        cache_key = hmac.digest(self._key, name_bytes + b"\0" + password_bytes, "sha256")
        return BasicCredentials(name, password, cache_key)

    def record(self, session: Executor, decision: Decision, now: float) -> None:
        """Apply the writes that a decision asked for."""
        users = UserRepository(session)
        sessions = SessionRepository(session)
        if decision.count_failure_for:
            users.record_failure(decision.count_failure_for, self._lock_threshold(decision))
        if decision.pretend_failure:
            ControlRepository(session).count_unknown_failure()
        if decision.clear_failures_for:
            users.clear_failures(decision.clear_failures_for)
        if decision.upgrade_hash:
            users.upgrade_hash(*decision.upgrade_hash)
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

    async def _decide_basic(
        self,
        credentials: BasicCredentials,
        user: AnyRow | None,
        token: str | None,
        row: AnyRow | None,
        now: float,
    ) -> Decision:
        name = credentials.name
        if user is None:
            await self._verify(_burn, credentials.password)
            return Decision(pretend_failure=self._counts_failures(name))
        # A locked account answers the right password as a wrong one, in time too: a full
        # verification (no cache) and the same failure count.
        ok, upgraded = await self._password_ok(
            credentials, user.password_hash, cached=not user.locked
        )
        if user.locked or not ok:
            return Decision(count_failure_for=name if self._counts_failures(name) else None)
        decision = Decision(clear_failures_for=name if user.failed_logins else None)
        if upgraded is not None:
            decision.upgrade_hash = (name, user.password_hash, upgraded)
        if token is None or row is None or now - row.last_used_at > self.session_timeout:
            with self._lock:
                # Calls of one account that came together all planned without a usable token:
                # the first here makes one, the others hand out the same (each opens it, once).
                fresh = self._basic_tokens.get(credentials.cache_key)
                token = fresh if fresh is not None and fresh != token else secrets.token_urlsafe(32)
                self._basic_tokens[credentials.cache_key] = token
                self._trim(self._basic_tokens)
            decision.new_session = (token_digest(token), name)
        elif self._touch_due(row, now):
            decision.touch_session = row.token_hash
        decision.principal = self._principal(user, token)
        return decision

    def _decide_hsso(
        self, credentials: HssoToken, user: AnyRow | None, row: AnyRow | None, now: float
    ) -> Decision:
        if row is None:
            return Decision()
        if now - row.last_used_at > self.session_timeout:
            return Decision(expire_session=credentials.digest)
        if user is None or user.locked:
            return Decision()
        decision = Decision(principal=self._principal(user, credentials.token))
        if self._touch_due(row, now):
            decision.touch_session = credentials.digest
        return decision

    def _touch_due(self, row: AnyRow, now: float) -> bool:
        """Whether this call marks the session used: not if the last mark is recent, nor if a
        call of this process already asked to (the calls that read the same row would all ask,
        64 writes where one does)."""
        with self._lock:
            last = max(row.last_used_at, self._touched.get(row.token_hash, row.last_used_at))
            if now - last < _TOUCH_INTERVAL:
                return False
            self._touched[row.token_hash] = now
            self._trim(self._touched)
            return True

    def _reusable(self, cache_key: bytes) -> str | None:
        with self._lock:
            return self._basic_tokens.get(cache_key)

    async def _password_ok(
        self, credentials: BasicCredentials, password_hash: str, *, cached: bool = True
    ) -> tuple[bool, str | None]:
        """Whether the password matches, and the hash to store instead (another scheme's)."""
        # A hit counts only while the stored hash is the one verified, so a changed password
        # misses at once; the lock is checked from the database on every request.
        key = credentials.cache_key
        with self._lock:
            if cached and self._verified.get(key) == password_hash:
                self._verified.move_to_end(key)
                return True, None
        if _too_long(credentials.password):
            await self._verify(_burn, credentials.password)
            return False, None
        # A locked account's answer must not cost an upgrade's hash more for the right password.
        verify = partial(verify_and_update, memo=cached, upgrade=cached)
        ok, upgraded = await self._verify(verify, credentials.password, password_hash)
        if not ok:
            return False, None
        with self._lock:
            # The upgraded hash is the one the next call reads.
            self._verified[key] = upgraded or password_hash
            self._trim(self._verified)
        return True, upgraded

    async def _verify(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one password verification in a worker thread, within the concurrency limit."""

        def limited() -> T:
            with self._verifying:
                return fn(*args)

        return await run_in_threadpool(limited)

    @staticmethod
    def _trim(cache: OrderedDict[Any, Any]) -> None:
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)

    @staticmethod
    def _principal(user: AnyRow, token: str) -> Principal:
        return Principal(user.name, parse_permissions(user.permissions), token)
