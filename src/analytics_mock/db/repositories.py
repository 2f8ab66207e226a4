"""Every query the server makes, grouped by table. Repositories flush but never commit.

Queries are Core statements that run on an ORM `Session` or on a plain `Connection` (the
runner's, on the hot path, where a Session's set-up and identity map cost more than the query);
only the few writes of whole ORM objects, at start-up and from the control API, need a Session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Row,
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from analytics_mock.db.models import (
    ControlRow,
    EmailSettingRow,
    FaultRow,
    JournalRow,
    MailFailureRow,
    SessionRow,
    TestMailRow,
    UserRow,
)
from analytics_mock.db.prepared import Prepared
from analytics_mock.query.sql import Field

# The 7 response attributes that `$query` and `$order-by` may name, mapped onto columns.
EMAIL_SETTING_FIELDS: dict[str, Field] = {
    "instanceID": Field(EmailSettingRow.instance_id, "string", nullable=False),
    "hostname": Field(EmailSettingRow.hostname, "string", nullable=False),
    "authenticationEnabled": Field(
        EmailSettingRow.authentication_enabled, "boolean", nullable=False
    ),
    "userId": Field(EmailSettingRow.user_id, "string", nullable=True),
    "senderAddress": Field(EmailSettingRow.sender_address, "string", nullable=False),
    "secureConnection": Field(EmailSettingRow.secure_connection, "string", nullable=False),
    "portNumber": Field(EmailSettingRow.port_number, "integer", nullable=False),
}


Executor = Session | Connection
AnyRow = Row[*tuple[Any, ...]]

_SETTINGS = cast(Table, EmailSettingRow.__table__)
_USERS = cast(Table, UserRow.__table__)
_SESSIONS = cast(Table, SessionRow.__table__)
_JOURNAL = cast(Table, JournalRow.__table__)
_FAULTS = cast(Table, FaultRow.__table__)
_CONTROL = cast(Table, ControlRow.__table__)


def clear_tables(session: Executor, tables: Sequence[Table]) -> dict[str, int]:
    """Delete every row of `tables`, given parents first (as `MetaData.sorted_tables` orders).

    How many rows each table lost, by name.
    """
    deleted: dict[str, int] = {}
    for table in reversed(tables):
        result = session.execute(delete(table))
        deleted[table.name] = int(getattr(result, "rowcount", 0) or 0)
    return deleted


def _dialect(executor: Executor) -> Dialect:
    return executor.get_bind().dialect if isinstance(executor, Session) else executor.dialect


def _orm(executor: Executor) -> Session:
    assert isinstance(executor, Session), "writing ORM objects needs a Session"
    return executor


@dataclass(frozen=True, slots=True)
class SettingRecord:
    """One stored EmailServerSettings object, detached from any session."""

    pk: int
    instance_id: str
    hostname: str
    port_number: int
    secure_connection: str
    authentication_enabled: bool
    user_id: str | None
    password_encrypted: bytes | None
    sender_address: str

    @classmethod
    def from_row(cls, row: Any) -> SettingRecord:
        """The record of a row selected with all the table's columns, in their order."""
        pk, instance_id, hostname, port, secure, auth, user_id, password, sender = row
        # bool(): a prepared statement on SQLite hands back 0 or 1.
        return cls(pk, instance_id, hostname, port, secure, bool(auth), user_id, password, sender)

    def with_members(self, members: dict[str, Any]) -> SettingRecord:
        """This record with each of `members` (`SETTING_MEMBERS`) that is not None set."""
        return dataclasses.replace(
            self, **{name: value for name, value in members.items() if value is not None}
        )


_SETTING_COLUMNS = tuple(getattr(_SETTINGS.c, name) for name in SettingRecord.__slots__)

# The hot path's statements, built and compiled once (see prepared.py).
_SETTING_BY_ID = select(*_SETTING_COLUMNS).where(_SETTINGS.c.instance_id == bindparam("id"))
_GET_SETTING = Prepared(_SETTING_BY_ID)
_GET_SETTING_FOR_UPDATE = Prepared(_SETTING_BY_ID.with_for_update())
_SAVE_SETTING = Prepared(
    update(_SETTINGS)
    .where(_SETTINGS.c.pk == bindparam("record_pk"))
    .values({name: bindparam(f"new_{name}") for name in SettingRecord.__slots__[2:]})
)
# The members a partial update sets: all but the keys.
SETTING_MEMBERS = SettingRecord.__slots__[2:]
# One statement per PUT: each member that is not NULL replaces the stored one.
_UPDATE_SETTING = Prepared(
    update(_SETTINGS)
    .where(_SETTINGS.c.instance_id == bindparam("id"))
    .values(
        {
            name: func.coalesce(bindparam(f"new_{name}", type_=_SETTINGS.c[name].type), column)
            for name, column in ((name, _SETTINGS.c[name]) for name in SETTING_MEMBERS)
        }
    )
    .returning(*_SETTING_COLUMNS)
)
_COUNT_SETTINGS = Prepared(select(func.count()).select_from(_SETTINGS))
_PAGE_OF_SETTINGS = Prepared(
    select(*_SETTING_COLUMNS)
    .order_by(_SETTINGS.c.pk)
    .offset(bindparam("offset"))
    .limit(bindparam("limit"))
)
_USER_CREDENTIALS = Prepared(
    select(
        _USERS.c.name,
        _USERS.c.password_hash,
        _USERS.c.permissions,
        _USERS.c.failed_logins,
        _USERS.c.locked,
    ).where(_USERS.c.name == bindparam("name"))
)
_SESSION_BY_HASH = Prepared(
    select(_SESSIONS.c.token_hash, _SESSIONS.c.user_name, _SESSIONS.c.last_used_at).where(
        _SESSIONS.c.token_hash == bindparam("token_hash")
    )
)
_JOURNAL_COLUMNS = [c.key for c in _JOURNAL.c if c.key != "id"]
_ADD_JOURNAL = Prepared(insert(_JOURNAL).values({c: bindparam(c) for c in _JOURNAL_COLUMNS}))
_TRIM_JOURNAL = Prepared(
    delete(_JOURNAL).where(
        _JOURNAL.c.id <= select(func.max(_JOURNAL.c.id)).scalar_subquery() - bindparam("keep")
    )
)
_CONTROL_SWITCHES = Prepared(
    select(_CONTROL.c.generation, _CONTROL.c.maintenance).where(_CONTROL.c.id == 1)
)


def _write(executor: Executor, record: SettingRecord) -> None:
    values = {f"new_{name}": getattr(record, name) for name in SettingRecord.__slots__[2:]}
    _SAVE_SETTING.run(executor, {"record_pk": record.pk, **values})


class EmailSettingsRepository:
    """Queries on `email_settings`."""

    def __init__(self, session: Executor) -> None:
        self.session = session

    def get(self, instance_id: str, *, for_update: bool = False) -> SettingRecord | None:
        """The object with this instanceID, locked for the transaction when `for_update`."""
        stmt = _GET_SETTING_FOR_UPDATE if for_update else _GET_SETTING
        row = stmt.first(self.session, {"id": instance_id})
        return SettingRecord.from_row(row) if row is not None else None

    def first(self) -> SettingRecord | None:
        """The oldest object: the one the test mail uses."""
        row = self.session.execute(
            select(*_SETTING_COLUMNS).order_by(_SETTINGS.c.pk).limit(1)
        ).first()
        return SettingRecord.from_row(row) if row is not None else None

    def save(self, record: SettingRecord) -> None:
        """Write every member of `record` to its stored object."""
        _write(self.session, record)

    def update(self, instance_id: str, members: dict[str, Any]) -> SettingRecord | None:
        """Set each of `members` (`SETTING_MEMBERS`) that is not None; the object as it is now.

        None when there is no such object. Where the database has no `UPDATE ... RETURNING`
        (SQLite before 3.35), a locked read and a write of a changed object do the same.
        """
        if not _dialect(self.session).update_returning:
            row = self.get(instance_id, for_update=True)
            if row is None:
                return None
            updated = row.with_members(members)
            if updated != row:
                self.save(updated)
            return updated
        values = {f"new_{name}": members.get(name) for name in SETTING_MEMBERS}
        row = _UPDATE_SETTING.first(self.session, {"id": instance_id, **values})
        return SettingRecord.from_row(row) if row is not None else None

    def page(
        self,
        where: ColumnElement[bool] | None,
        order_by: Sequence[ColumnElement[Any]],
        offset: int,
        limit: int,
    ) -> tuple[int, list[SettingRecord]]:
        """The number of matching objects and the selected window of them, both counted in SQL."""
        if where is None and not order_by:
            return self._plain_page(offset, limit)
        count_stmt = select(func.count()).select_from(_SETTINGS)
        rows_stmt = select(*_SETTING_COLUMNS)
        if where is not None:
            count_stmt = count_stmt.where(where)
            rows_stmt = rows_stmt.where(where)
        total = self.session.scalar(count_stmt) or 0
        if total == 0 or offset >= total:
            return total, []
        # `pk` last keeps the order total and stable, so pages never overlap or skip.
        rows_stmt = rows_stmt.order_by(*order_by, _SETTINGS.c.pk).offset(offset).limit(limit)
        return total, [SettingRecord.from_row(row) for row in self.session.execute(rows_stmt)]

    def _plain_page(self, offset: int, limit: int) -> tuple[int, list[SettingRecord]]:
        # The common list call, no filter and no order, through statements compiled once.
        total = self.count()
        if total == 0 or offset >= total:
            return total, []
        rows = _PAGE_OF_SETTINGS.rows(self.session, {"offset": offset, "limit": limit})
        return total, [SettingRecord.from_row(row) for row in rows]

    def count(self) -> int:
        """How many objects are stored."""
        row = _COUNT_SETTINGS.first(self.session)
        return int(row[0]) if row is not None else 0

    def all(self) -> list[SettingRecord]:
        """Every object, in creation order."""
        stmt = select(*_SETTING_COLUMNS).order_by(_SETTINGS.c.pk)
        return [SettingRecord.from_row(row) for row in self.session.execute(stmt)]

    def replace_all(self, rows: Sequence[EmailSettingRow]) -> None:
        """Make `rows` the only objects, in their order; an object that stays is updated in place.

        In place, because on PostgreSQL another process's call that waits for the object's row
        lock must find it afterwards (a deleted and re-inserted row is a 404 to it). Two
        replacements never run at once (the writers' lock, db/engine.py), so two processes never
        both insert the same instanceID (a unique violation).
        """
        session = _orm(self.session)
        wanted = [
            {column.key: getattr(row, column.key) for column in _SETTINGS.columns} for row in rows
        ]
        ids = [values["instance_id"] for values in wanted]
        session.execute(delete(_SETTINGS).where(_SETTINGS.c.instance_id.not_in(ids)))
        kept = set(
            session.scalars(
                select(_SETTINGS.c.instance_id)
                .where(_SETTINGS.c.instance_id.in_(ids))
                .order_by(_SETTINGS.c.instance_id)  # one lock order for every process
                .with_for_update()
            )
        )
        # Fresh keys above every kept one give the objects the order of `rows`.
        base = session.scalar(select(func.coalesce(func.max(_SETTINGS.c.pk), 0))) or 0
        for offset, values in enumerate(wanted, start=1):
            values["pk"] = base + offset
            if values["instance_id"] in kept:
                session.execute(
                    update(_SETTINGS)
                    .where(_SETTINGS.c.instance_id == values["instance_id"])
                    .values(**values)
                )
            else:
                session.execute(insert(_SETTINGS).values(**values))
        session.flush()

    def add_if_absent(self, row: EmailSettingRow) -> bool:
        """Insert `row` unless its instanceID exists; false when another process won the race."""
        session = _orm(self.session)
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            return False
        return True


class UserRepository:
    """Queries on `users`."""

    def __init__(self, session: Executor) -> None:
        self.session = session

    def get(self, name: str) -> UserRow | None:
        """The account called `name`, as an ORM object to change."""
        return _orm(self.session).get(UserRow, name)

    def credentials(self, name: str) -> Any | None:
        """What authentication reads of the account called `name`."""
        return _USER_CREDENTIALS.first(self.session, {"name": name})

    def fingerprint(self) -> list[tuple[Any, ...]]:
        """Every account's columns, by name: equal lists, equal accounts."""
        stmt = select(*_USERS.c).order_by(_USERS.c.name)
        return [tuple(row) for row in self.session.execute(stmt)]

    def all(self) -> list[UserRow]:
        """Every account, by name."""
        return list(self.session.scalars(select(UserRow).order_by(UserRow.name)))

    def add(self, row: UserRow) -> None:
        """Insert an account."""
        session = _orm(self.session)
        session.add(row)
        session.flush()

    def delete_except(self, keep: set[str]) -> None:
        """Remove every account whose name is not in `keep`."""
        self.session.execute(delete(UserRow).where(UserRow.name.not_in(keep)))

    def record_failure(self, name: str, lock_after: int) -> None:
        """Count a failed login, locking the account when the count reaches `lock_after` (> 0)."""
        # One atomic UPDATE, so concurrent failures in several processes all count.
        count = UserRow.failed_logins + 1
        values: dict[str, Any] = {"failed_logins": count}
        if lock_after > 0:
            values["locked"] = UserRow.locked | (count >= lock_after)
        self.session.execute(update(UserRow).where(UserRow.name == name).values(**values))

    def upgrade_hash(self, name: str, old: str, new: str) -> None:
        """Replace the account's hash `old` by `new`, unless it changed meanwhile."""
        self.session.execute(
            update(UserRow)
            .where(UserRow.name == name, UserRow.password_hash == old)
            .values(password_hash=new)
        )

    def clear_failures(self, name: str) -> None:
        """Reset the consecutive failure count after a good login."""
        self.session.execute(
            update(UserRow)
            .where(UserRow.name == name, UserRow.failed_logins != 0)
            .values(failed_logins=0)
        )

    def set_lock_state(self, name: str, failed_logins: int, locked: bool) -> None:
        """Set an account's failure count and lock as given."""
        self.session.execute(
            update(UserRow)
            .where(UserRow.name == name)
            .values(failed_logins=failed_logins, locked=locked)
        )

    def unlock_all(self) -> None:
        """Unlock every account and clear every failure count."""
        self.session.execute(update(UserRow).values(locked=False, failed_logins=0))

    def unlock(self, name: str) -> bool:
        """Unlock the account and clear its failures; false if there is no such account."""
        result = self.session.execute(
            update(UserRow).where(UserRow.name == name).values(locked=False, failed_logins=0)
        )
        return bool(getattr(result, "rowcount", 0))


class SessionRepository:
    """Queries on `sessions` (HSSO tokens)."""

    def __init__(self, session: Executor) -> None:
        self.session = session

    def get(self, token_hash: str) -> Any | None:
        """The user and last use of the session whose token hashes to `token_hash`."""
        return _SESSION_BY_HASH.first(self.session, {"token_hash": token_hash})

    def add(self, token_hash: str, user_name: str, now: float) -> None:
        """Open a session, unless it is open (calls of one account that came together share it)."""
        values = select(literal(token_hash), literal(user_name), literal(now), literal(now)).where(
            ~exists().where(_SESSIONS.c.token_hash == token_hash)
        )
        columns = ["token_hash", "user_name", "created_at", "last_used_at"]
        self.session.execute(insert(_SESSIONS).from_select(columns, values))

    def touch(self, token_hash: str, now: float) -> None:
        """Mark the session used now."""
        self.session.execute(
            update(SessionRow)
            .where(SessionRow.token_hash == token_hash, SessionRow.last_used_at < now)
            .values(last_used_at=now)
        )

    def delete(self, token_hash: str) -> None:
        """End one session."""
        self.session.execute(delete(SessionRow).where(SessionRow.token_hash == token_hash))

    def end_for(self, user_name: str) -> None:
        """End every session of one account."""
        self.session.execute(delete(SessionRow).where(SessionRow.user_name == user_name))

    def purge_idle(self, idle_before: float) -> None:
        """End every session unused since `idle_before`."""
        self.session.execute(delete(SessionRow).where(SessionRow.last_used_at < idle_before))

    def clear(self) -> None:
        """End every session."""
        self.session.execute(delete(SessionRow))

    def count(self) -> int:
        """How many sessions are stored."""
        return self.session.scalar(select(func.count()).select_from(SessionRow)) or 0


class TestMailRepository:
    """Queries on `test_mails`, the record of test-mail attempts."""

    __test__ = False

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: TestMailRow, keep: int) -> None:
        """Record one attempt and forget all but the newest `keep`."""
        self.session.add(row)
        self.session.flush()
        oldest_kept = (
            select(TestMailRow.pk).order_by(TestMailRow.pk.desc()).offset(keep - 1).limit(1)
        ).scalar_subquery()
        self.session.execute(delete(TestMailRow).where(TestMailRow.pk < oldest_kept))

    def newest(self, limit: int) -> list[TestMailRow]:
        """The most recent attempts, newest first."""
        stmt = select(TestMailRow).order_by(TestMailRow.pk.desc()).limit(limit)
        return list(self.session.scalars(stmt))

    def clear(self) -> None:
        """Forget every attempt."""
        self.session.execute(delete(TestMailRow))


class JournalRepository:
    """Queries on `journal`, the bounded record of emulated API calls."""

    def __init__(self, session: Executor) -> None:
        self.session = session

    def add_all(self, entries: list[dict[str, Any]], keep: int) -> None:
        """Record calls (column values each, oldest first) and forget all but the newest `keep`."""
        _ADD_JOURNAL.run_many(self.session, entries)
        _TRIM_JOURNAL.run(self.session, {"keep": keep})

    def newest(
        self,
        *,
        limit: int,
        method: str | None = None,
        path: str | None = None,
        status: int | None = None,
        since: float | None = None,
    ) -> list[JournalRow]:
        """Calls matching every given filter, newest first."""
        stmt = select(JournalRow)
        if method is not None:
            stmt = stmt.where(JournalRow.method == method)
        if path is not None:
            stmt = stmt.where(JournalRow.path == path)
        if status is not None:
            stmt = stmt.where(JournalRow.status == status)
        if since is not None:
            stmt = stmt.where(JournalRow.created_at >= since)
        return list(self.session.scalars(stmt.order_by(JournalRow.id.desc()).limit(limit)))

    def clear(self) -> None:
        """Forget every call."""
        self.session.execute(delete(JournalRow))


class FaultRepository:
    """Queries on `faults`."""

    def __init__(self, session: Executor) -> None:
        self.session = session

    def all(self) -> list[AnyRow]:
        """Every rule, oldest first (the order in which they are matched)."""
        return list(self.session.execute(select(_FAULTS).order_by(_FAULTS.c.id)))

    def add(self, row: FaultRow) -> None:
        """Store a rule."""
        session = _orm(self.session)
        session.add(row)
        session.flush()

    def count(self) -> int:
        """How many rules there are."""
        return int(self.session.execute(select(func.count()).select_from(_FAULTS)).scalar_one())

    def delete(self, fault_id: int) -> bool:
        """Remove one rule; false if there was none."""
        result = self.session.execute(delete(FaultRow).where(FaultRow.id == fault_id))
        return bool(getattr(result, "rowcount", 0))

    def clear(self) -> None:
        """Remove every rule."""
        self.session.execute(delete(FaultRow))

    def take(self, fault_id: int) -> bool:
        """Use up one of a counted rule's calls; false when none is left (or it is gone)."""
        # One conditional UPDATE, so two processes can never both take the last call.
        result = self.session.execute(
            update(FaultRow)
            .where(FaultRow.id == fault_id, FaultRow.remaining > 0)
            .values(remaining=FaultRow.remaining - 1)
        )
        return bool(getattr(result, "rowcount", 0))

    def exists(self, fault_id: int) -> bool:
        """Whether the rule is still stored."""
        stmt = select(_FAULTS.c.id).where(_FAULTS.c.id == fault_id)
        return self.session.execute(stmt).first() is not None

    def remaining(self, fault_id: int) -> int | None:
        """How many calls the rule has left (None: unlimited, or the rule is gone)."""
        stmt = select(_FAULTS.c.remaining).where(_FAULTS.c.id == fault_id)
        return self.session.scalar(stmt)


class ControlRepository:
    """The shared switches row."""

    def __init__(self, session: Executor) -> None:
        self.session = session

    def get(self) -> Any:
        """The switches: `generation` and `maintenance` (the migration creates the row)."""
        row = _CONTROL_SWITCHES.first(self.session)
        assert row is not None, "the control row is created by migration 0003"
        return row

    def bump(self, *, maintenance: bool | None = None) -> None:
        """Tell every process to reload faults and switches, setting maintenance if given."""
        values: dict[str, Any] = {"generation": ControlRow.generation + 1}
        if maintenance is not None:
            values["maintenance"] = maintenance
        self.session.execute(update(ControlRow).where(ControlRow.id == 1).values(**values))

    def count_unknown_failure(self) -> None:
        """Count a failed login that named no account (a row changed, as for a known one)."""
        # Changed, not rewritten as it was: SQLite skips an unchanged row's write, and with it
        # the commit's fsync that a known account's failure costs.
        self.session.execute(
            update(ControlRow)
            .where(ControlRow.id == 1)
            .values(unknown_failures=ControlRow.unknown_failures + 1)
        )

    def probe_write(self) -> bool:
        """Write the switches row unchanged: whether the database takes a write at all."""
        self.session.execute(
            update(ControlRow).where(ControlRow.id == 1).values(generation=ControlRow.generation)
        )
        return True


class MailFailureRepository:
    """Queries on `mail_failures`, the failures injected into the next test mails."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: MailFailureRow) -> None:
        """Store a failure."""
        self.session.add(row)
        self.session.flush()

    def clear(self) -> None:
        """Remove every failure."""
        self.session.execute(delete(MailFailureRow))

    def take_oldest(self) -> str | None:
        """The oldest failure's kind, one of its uses taken (the last removes it); or None."""
        row = self.session.scalars(
            select(MailFailureRow).order_by(MailFailureRow.id).limit(1)
        ).first()
        if row is None:
            return None
        if row.remaining is not None:
            # Conditional, so two processes never both take the last use.
            taken = self.session.execute(
                update(MailFailureRow)
                .where(MailFailureRow.id == row.id, MailFailureRow.remaining > 0)
                .values(remaining=MailFailureRow.remaining - 1)
            )
            if not getattr(taken, "rowcount", 0):
                return None
            self.session.execute(
                delete(MailFailureRow).where(
                    MailFailureRow.id == row.id, MailFailureRow.remaining <= 0
                )
            )
        return row.failure_kind
