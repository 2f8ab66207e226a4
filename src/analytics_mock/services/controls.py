"""Rules of the test controls: reset, state export and import, faults, maintenance, records.

Faults and maintenance live in the database so that every process over it honours them; each
process caches them and reloads only when the shared `generation` counter moves.
"""

from __future__ import annotations

import fnmatch
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pydantic import ValidationError
from sqlalchemy.orm import Session

from analytics_mock.config_files import first_problem
from analytics_mock.crypto import SecretBox
from analytics_mock.db.models import Base, FaultRow, MailFailureRow
from analytics_mock.db.repositories import (
    AnyRow,
    ControlRepository,
    EmailSettingsRepository,
    Executor,
    FaultRepository,
    MailFailureRepository,
    SessionRepository,
    TestMailRepository,
    UserRepository,
    clear_tables,
)
from analytics_mock.errors import InvalidBody
from analytics_mock.formats import vendor_time
from analytics_mock.passwords import hash_password
from analytics_mock.schemas.controls import FaultIn, MailFailureIn, State, StateUser
from analytics_mock.services.seed import Seed, exported_setting, setting_row
from analytics_mock.services.users import UserSpec, sync_users


def merge_users(*groups: list[UserSpec]) -> list[UserSpec]:
    """Users from several sources; a later source wins for the same name."""
    merged: dict[str, UserSpec] = {}
    for group in groups:
        for spec in group:
            merged[spec.name] = spec
    return list(merged.values())


def seed_store(session: Session, box: SecretBox, seed: Seed, users: list[UserSpec]) -> None:
    """At start-up: seed an empty store and bring the accounts in line with the configuration."""
    settings = EmailSettingsRepository(session)
    if settings.count() == 0:
        for row in seed.setting_rows(box):
            settings.add_if_absent(row)
    sync_users(session, users)


# The tables a reset puts back to the configuration rather than empties; every other table
# of the models (records, sessions, rules, and whatever table comes next) is emptied.
RESEEDED_TABLES = frozenset({"email_settings", "users", "control"})


@dataclass
class ResetMemo:
    """What the reseeded tables held right after the last reset: unchanged, they are skipped."""

    clean: tuple[Any, ...] | None = None


def _fingerprint(session: Session) -> tuple[Any, ...]:
    return (
        EmailSettingsRepository(session).all(),
        UserRepository(session).fingerprint(),
        bool(ControlRepository(session).get().maintenance),
    )


def reset(
    session: Session,
    box: SecretBox,
    seed: Seed,
    users: list[UserSpec],
    maintenance: bool,
    memo: ResetMemo | None = None,
) -> None:
    """Everything back to the seed: settings, accounts, tokens, journal, faults, mails, switches.

    Every table of the models is emptied but the reseeded ones, which are written again only
    when they differ from what the last reset left (`memo`, kept by the caller).
    """
    # Concurrent resets and imports run one after the other, whole: on SQLite there is one
    # writer, on PostgreSQL every writing transaction holds the writers' lock (db/engine.py).
    deleted = clear_tables(
        session, [t for t in Base.metadata.sorted_tables if t.name not in RESEEDED_TABLES]
    )
    if memo is not None and memo.clean is not None and _fingerprint(session) == memo.clean:
        if deleted.get(FaultRow.__tablename__):
            ControlRepository(session).bump()  # every process drops the removed rules
        return
    EmailSettingsRepository(session).replace_all(seed.setting_rows(box))
    sync_users(session, users)
    UserRepository(session).unlock_all()
    ControlRepository(session).bump(maintenance=maintenance)
    if memo is not None:
        memo.clean = _fingerprint(session)


def decoded_path(path: str) -> str:
    """A path as the emulator matches it: percent-encoded sequences (%23) decoded."""
    return unquote(path, errors="strict") if "%" in path else path


def fault_body(row: FaultRow | AnyRow) -> dict[str, Any]:
    """A stored fault rule as the control API shows it."""
    return {
        "id": row.id,
        "method": row.method,
        "path": row.path_pattern,
        "status": row.status,
        "message": row.message,
        "delayMs": row.delay_ms,
        "jitterMs": row.jitter_ms,
        "seed": row.seed,
        "drop": row.drop,
        "reset": row.answer == "reset",
        "empty": row.answer == "empty",
        "malformed": row.answer == "malformed",
        "headers": json.loads(row.headers) if row.headers else None,
        "body": row.body,
        "remaining": row.remaining,
    }


def list_faults(session: Session) -> list[dict[str, Any]]:
    """Every fault rule, in the order they are matched."""
    return [fault_body(row) for row in FaultRepository(session).all()]


def maintenance_enabled(session: Session) -> bool:
    """Whether the maintenance switch is on."""
    return bool(ControlRepository(session).get().maintenance)


def export_state(session: Session) -> dict[str, Any]:
    """The whole emulated state; passwords only as ciphertext or hash."""
    users = UserRepository(session).all()
    return {
        "settings": [exported_setting(row) for row in EmailSettingsRepository(session).all()],
        "users": [
            {
                "name": user.name,
                "passwordHash": user.password_hash,
                "permissions": sorted(p for p in user.permissions.split(",") if p),
                "failedLogins": user.failed_logins,
                "locked": user.locked,
            }
            for user in users
        ],
        "maintenance": maintenance_enabled(session),
        "faults": list_faults(session),
    }


def _user_spec(user: StateUser) -> UserSpec:
    """The account `user` describes, or a 400 that names the user and echoes no password."""
    document = {
        "name": user.name,
        "password": user.password,
        "passwordHash": user.passwordHash,
        "permissions": user.permissions,
    }
    try:
        return UserSpec.model_validate(document)
    except ValidationError as exc:
        problem = first_problem(exc, where=f'user "{user.name}"')
        raise InvalidBody(f"The request body is invalid: {problem}.") from None


def hash_plaintext_passwords(state: State) -> State:
    """`state` with each plaintext password checked and replaced by its hash.

    Run before the import's write: hashing 1,000 passwords in it would hold the write lock, and
    every emulated call with it, for seconds.
    """
    users = []
    for user in state.users:
        if user.password is None:
            users.append(user)
            continue
        _user_spec(user)  # the password rules, on the plaintext
        hashed = hash_password(user.password)
        users.append(user.model_copy(update={"password": None, "passwordHash": hashed}))
    return state.model_copy(update={"users": users})


def import_state(session: Session, box: SecretBox, state: State, now: float) -> None:
    """Replace the emulated state with `state`; sessions end, journal and mail record stay."""
    EmailSettingsRepository(session).replace_all([setting_row(s, box) for s in state.settings])
    sync_users(session, [_user_spec(user) for user in state.users])
    users = UserRepository(session)
    for user in state.users:
        users.set_lock_state(user.name, user.failedLogins, user.locked)
    SessionRepository(session).clear()
    faults = FaultRepository(session)
    faults.clear()
    for fault in state.faults:
        faults.add(fault_row(fault, now, calls=fault.calls))
    ControlRepository(session).bump(maintenance=state.maintenance)


def fault_row(fault: FaultIn, now: float, *, calls: int | None = None) -> FaultRow:
    """The row for a new fault rule, holding for `calls` (default: the rule's `times`)."""
    connection = fault.connection
    return FaultRow(
        method=fault.method,
        path_pattern=decoded_path(fault.path),
        status=fault.status,
        message=fault.message,
        delay_ms=fault.delayMs,
        drop=fault.drop,
        answer="malformed" if fault.malformed else connection if connection != "drop" else None,
        headers=json.dumps(fault.headers) if fault.headers else None,
        body=fault.body,
        jitter_ms=fault.jitterMs,
        seed=fault.seed,
        remaining=calls if calls is not None else fault.times,
        created_at=now,
    )


def add_fault(session: Session, fault: FaultIn, now: float, limit: int) -> dict[str, Any]:
    """Store a fault rule and tell every process; 400 when `limit` rules exist already.

    Bounded, because every emulated call is matched against every rule.
    """
    faults = FaultRepository(session)
    if faults.count() >= limit:
        raise InvalidBody(f"The request body is invalid: at most {limit} fault rules may exist.")
    row = fault_row(fault, now)
    faults.add(row)
    ControlRepository(session).bump()
    return fault_body(row)


def delete_fault(session: Session, fault_id: int) -> bool:
    """Remove one fault rule; false if there is none."""
    deleted = FaultRepository(session).delete(fault_id)
    if deleted:
        ControlRepository(session).bump()
    return deleted


def clear_faults(session: Session) -> None:
    """Remove every fault rule."""
    FaultRepository(session).clear()
    ControlRepository(session).bump()


def set_maintenance(session: Session, enabled: bool) -> None:
    """Turn the maintenance switch on or off for every process."""
    ControlRepository(session).bump(maintenance=enabled)


@dataclass(frozen=True)
class FaultRule:
    """A cached fault rule."""

    id: int
    method: str | None
    pattern: str
    status: int | None
    message: str | None
    delay_ms: int
    drop: bool
    counted: bool
    answer: str | None = None  # reset, empty or malformed
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    jitter_ms: int = 0
    seed: int | None = None
    # The jitter's generator, shared by every call the rule matches in this process.
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def matches(self, method: str, path: str) -> bool:
        """Whether a call with this method and decoded path falls under the rule."""
        return (self.method is None or self.method == method) and fnmatch.fnmatchcase(
            path, self.pattern
        )

    def delay(self) -> float:
        """Seconds to wait before the rule acts: the delay plus this call's jitter."""
        jitter = self.rng.randint(0, self.jitter_ms) if self.jitter_ms else 0
        return (self.delay_ms + jitter) / 1000

    @classmethod
    def from_row(cls, row: AnyRow, rng: random.Random | None = None) -> FaultRule:
        """The rule of a stored row; `rng` keeps the jitter sequence of an already cached rule."""
        headers = tuple(json.loads(row.headers).items()) if row.headers else ()
        return cls(
            row.id,
            row.method,
            row.path_pattern,
            row.status,
            row.message,
            row.delay_ms,
            row.drop,
            row.remaining is not None,
            row.answer,
            headers,
            row.body,
            row.jitter_ms,
            row.seed,
            rng or random.Random(row.seed),  # noqa: S311 - delays, not secrets
        )


@dataclass(frozen=True)
class ControlSnapshot:
    """The switches and rules as of one generation."""

    generation: int
    maintenance: bool
    faults: tuple[FaultRule, ...]


class ControlCache:
    """Per-process copy of the shared switches, reloaded when their generation moves."""

    def __init__(self) -> None:
        self._snapshot = ControlSnapshot(-1, False, ())
        self._lock = threading.Lock()

    def current(self, session: Executor) -> ControlSnapshot:
        """The switches now: one primary-key read, plus the rules when they changed."""
        control = ControlRepository(session).get()
        with self._lock:
            if control.generation == self._snapshot.generation:
                return self._snapshot
            generators = {rule.id: rule.rng for rule in self._snapshot.faults}
        rules = tuple(
            FaultRule.from_row(row, generators.get(row.id))
            for row in FaultRepository(session).all()
        )
        snapshot = ControlSnapshot(control.generation, control.maintenance, rules)
        with self._lock:
            self._snapshot = snapshot
        return snapshot


def take_fault(session: Executor, rule: FaultRule) -> bool:
    """Claim one use of `rule`; a counted rule that is used up is removed for every process."""
    faults = FaultRepository(session)
    if not rule.counted:
        return faults.exists(rule.id)
    if not faults.take(rule.id):
        return False
    if faults.remaining(rule.id) == 0:
        faults.delete(rule.id)
        ControlRepository(session).bump()
    return True


def list_test_mails(session: Session, limit: int) -> list[dict[str, Any]]:
    """The newest test-mail attempts, without passwords (none are recorded)."""
    return [
        {
            "jobId": row.job_id,
            "created": vendor_time(row.created_at),
            "completed": vendor_time(row.completed_at),
            "mode": row.mode,
            "hostname": row.hostname,
            "portNumber": row.port_number,
            "secureConnection": row.secure_connection,
            "authenticationEnabled": row.authentication_enabled,
            "userId": row.user_id,
            "senderAddress": row.sender_address,
            "destinationAddresses": json.loads(row.recipients),
            "state": row.state,
            "failureKind": row.failure,
            "detail": row.detail,
            "content": row.message,
        }
        for row in TestMailRepository(session).newest(limit)
    ]


def mail_failure_body(row: MailFailureRow) -> dict[str, Any]:
    """A stored test-mail failure as the control API shows it."""
    return {
        "id": row.id,
        "failureKind": row.failure_kind,
        "remaining": row.remaining,
    }


def add_mail_failure(session: Session, failure: MailFailureIn) -> dict[str, Any]:
    """Make the next test mails (all, or `times` of them) fail with `failure.failureKind`."""
    row = MailFailureRow(failure_kind=str(failure.failureKind), remaining=failure.times)
    MailFailureRepository(session).add(row)
    return mail_failure_body(row)


def clear_mail_failures(session: Session) -> None:
    """Test mails go through again."""
    MailFailureRepository(session).clear()


def take_mail_failure(session: Session) -> str | None:
    """The failure kind the next test mail must end with, using up one of its uses; or None."""
    return MailFailureRepository(session).take_oldest()
