"""Every query the server makes, grouped by table. Repositories flush but never commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from analytics_mock.db.models import (
    ControlRow,
    EmailSettingRow,
    FaultRow,
    JournalRow,
    SessionRow,
    TestMailRow,
    UserRow,
)
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


class EmailSettingsRepository:
    """Queries on `email_settings`."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, instance_id: str, *, for_update: bool = False) -> EmailSettingRow | None:
        """The object with this instanceID, locked for the transaction when `for_update`."""
        stmt = select(EmailSettingRow).where(EmailSettingRow.instance_id == instance_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).one_or_none()

    def first(self) -> EmailSettingRow | None:
        """The oldest object: the one the test mail uses."""
        return self.session.scalars(
            select(EmailSettingRow).order_by(EmailSettingRow.pk).limit(1)
        ).one_or_none()

    def page(
        self,
        where: ColumnElement[bool] | None,
        order_by: Sequence[ColumnElement[Any]],
        offset: int,
        limit: int,
    ) -> tuple[int, list[EmailSettingRow]]:
        """The number of matching objects and the selected window of them, both counted in SQL."""
        count_stmt = select(func.count()).select_from(EmailSettingRow)
        rows_stmt = select(EmailSettingRow)
        if where is not None:
            count_stmt = count_stmt.where(where)
            rows_stmt = rows_stmt.where(where)
        total = self.session.scalar(count_stmt) or 0
        if total == 0 or offset >= total:
            return total, []
        # `pk` last keeps the order total and stable, so pages never overlap or skip.
        rows_stmt = rows_stmt.order_by(*order_by, EmailSettingRow.pk).offset(offset).limit(limit)
        return total, list(self.session.scalars(rows_stmt))

    def count(self) -> int:
        """How many objects are stored."""
        return self.session.scalar(select(func.count()).select_from(EmailSettingRow)) or 0

    def all(self) -> list[EmailSettingRow]:
        """Every object, in creation order."""
        return list(self.session.scalars(select(EmailSettingRow).order_by(EmailSettingRow.pk)))

    def replace_all(self, rows: Sequence[EmailSettingRow]) -> None:
        """Make `rows` the only objects."""
        self.session.execute(delete(EmailSettingRow))
        self.session.add_all(rows)
        self.session.flush()

    def add_if_absent(self, row: EmailSettingRow) -> bool:
        """Insert `row` unless its instanceID exists; false when another process won the race."""
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            return False
        return True


class UserRepository:
    """Queries on `users`."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, name: str) -> UserRow | None:
        """The account called `name`."""
        return self.session.get(UserRow, name)

    def all(self) -> list[UserRow]:
        """Every account, by name."""
        return list(self.session.scalars(select(UserRow).order_by(UserRow.name)))

    def add(self, row: UserRow) -> None:
        """Insert an account."""
        self.session.add(row)
        self.session.flush()

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

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, token_hash: str) -> SessionRow | None:
        """The session whose token hashes to `token_hash`."""
        return self.session.get(SessionRow, token_hash)

    def add(self, token_hash: str, user_name: str, now: float) -> None:
        """Open a session."""
        self.session.add(
            SessionRow(token_hash=token_hash, user_name=user_name, created_at=now, last_used_at=now)
        )
        self.session.flush()

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

    def add(self, row: TestMailRow) -> None:
        """Record one attempt."""
        self.session.add(row)
        self.session.flush()

    def newest(self, limit: int) -> list[TestMailRow]:
        """The most recent attempts, newest first."""
        stmt = select(TestMailRow).order_by(TestMailRow.pk.desc()).limit(limit)
        return list(self.session.scalars(stmt))

    def clear(self) -> None:
        """Forget every attempt."""
        self.session.execute(delete(TestMailRow))


class JournalRepository:
    """Queries on `journal`, the bounded record of emulated API calls."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: JournalRow, keep: int) -> None:
        """Record one call and forget all but the newest `keep`."""
        self.session.add(row)
        self.session.flush()
        self.session.execute(delete(JournalRow).where(JournalRow.id <= row.id - keep))

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

    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> list[FaultRow]:
        """Every rule, oldest first (the order in which they are matched)."""
        return list(self.session.scalars(select(FaultRow).order_by(FaultRow.id)))

    def add(self, row: FaultRow) -> None:
        """Store a rule."""
        self.session.add(row)
        self.session.flush()

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
        return self.session.get(FaultRow, fault_id) is not None


class ControlRepository:
    """The shared switches row."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self) -> ControlRow:
        """The switches (the migration creates the row)."""
        row = self.session.get(ControlRow, 1)
        assert row is not None, "the control row is created by migration 0003"
        return row

    def bump(self, *, maintenance: bool | None = None) -> None:
        """Tell every process to reload faults and switches, setting maintenance if given."""
        values: dict[str, Any] = {"generation": ControlRow.generation + 1}
        if maintenance is not None:
            values["maintenance"] = maintenance
        self.session.execute(update(ControlRow).where(ControlRow.id == 1).values(**values))
