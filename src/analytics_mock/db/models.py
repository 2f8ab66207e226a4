"""SQLAlchemy ORM models: the tables every server process shares."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of all tables."""


class EmailSettingRow(Base):
    """One EmailServerSettings object; `pk` keeps creation order for unordered lists."""

    __tablename__ = "email_settings"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    port_number: Mapped[int] = mapped_column(Integer, nullable=False)
    secure_connection: Mapped[str] = mapped_column(String(16), nullable=False)
    authentication_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    user_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # The SMTP password must be usable again for test mails, so it is encrypted, never hashed.
    password_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sender_address: Mapped[str] = mapped_column(String(320), nullable=False)


class UserRow(Base):
    """An account that may call the API, with its lock state."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    # Comma-separated subset of Admin, Modify, StorageOps, UserManagement.
    permissions: Mapped[str] = mapped_column(String(255), nullable=False)
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The `passwordHash` the users file (or an import) gave when `password_hash` was set from
    # it: while the file gives the same, a hash upgraded at login since is kept.
    source_hash: Mapped[str | None] = mapped_column(Text, nullable=True)


class TestMailRow(Base):
    """One sendTestMail attempt, as it was made; never the password."""

    __test__ = False  # not a pytest test class, whatever its name
    __tablename__ = "test_mails"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False, index=True)
    completed_at: Mapped[float] = mapped_column(Float, nullable=False)
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    hostname: Mapped[str] = mapped_column(String(255), nullable=False)
    port_number: Mapped[int] = mapped_column(Integer, nullable=False)
    secure_connection: Mapped[str] = mapped_column(String(16), nullable=False)
    authentication_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    user_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sender_address: Mapped[str] = mapped_column(String(320), nullable=False)
    # JSON array of the destination addresses.
    recipients: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    failure: Mapped[str | None] = mapped_column(String(32), nullable=True)
    detail: Mapped[str] = mapped_column(Text, nullable=False)
    # The message as built (headers and body); it holds no credential.
    message: Mapped[str] = mapped_column(Text, nullable=False)


class SessionRow(Base):
    """An HSSO session token, stored only as its SHA-256 digest."""

    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(
        String(255), ForeignKey("users.name", ondelete="CASCADE"), nullable=False, index=True
    )
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    last_used_at: Mapped[float] = mapped_column(Float, nullable=False, index=True)


class JournalRow(Base):
    """One emulated API call as the client made it, secrets redacted."""

    __tablename__ = "journal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False, index=True)
    method: Mapped[str] = mapped_column(String(16), nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    query: Mapped[str] = mapped_column(Text, nullable=False)
    # JSON object of the request headers.
    headers: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False)


class FaultRow(Base):
    """A fault rule: matching calls get a status, a delay, or a dropped connection."""

    __tablename__ = "faults"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    path_pattern: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    delay_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    drop: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # None: until removed.
    remaining: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    # What happens to the connection instead of a normal answer: reset, empty or malformed.
    answer: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # A custom answer: JSON object of extra response headers, and the body as text.
    headers: Mapped[str | None] = mapped_column(Text, nullable=True)
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    # A random extra delay of up to jitter_ms, from a generator seeded with `seed` when given.
    jitter_ms: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default=text("0")
    )
    seed: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ControlRow(Base):
    """The one row of shared switches; `generation` moves whenever faults or switches change."""

    __tablename__ = "control"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    maintenance: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # Failed logins that named no account. Counted as a known account's failures are, so
    # that both cost one changed row and its commit (and tell no account names apart).
    unknown_failures: Mapped[int] = mapped_column(
        Integer, nullable=False, default=0, server_default="0"
    )


class MailFailureRow(Base):
    """A failure the next test mails end with, whatever the mode: `failure_kind` as the Job's."""

    __tablename__ = "mail_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    failure_kind: Mapped[str] = mapped_column(String(32), nullable=False)
    # None: until removed.
    remaining: Mapped[int | None] = mapped_column(Integer, nullable=True)
