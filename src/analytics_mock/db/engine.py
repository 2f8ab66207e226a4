"""Engine and unit-of-work scope: the only place that commits or rolls back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from analytics_mock.settings import Settings


def _sqlite_engine(url: URL, settings: Settings) -> Engine:
    if url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        hide_parameters=True,
        connect_args={
            "check_same_thread": False,
            "timeout": settings.sqlite_busy_timeout_ms / 1000,
        },
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take transactions out of the driver's hands so that `begin` below decides their kind.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={settings.sqlite_busy_timeout_ms:d}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={settings.sqlite_synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY
        # when another connection wrote in between; IMMEDIATE takes the write lock up front
        # and waits for it under busy_timeout instead.
        if connection.get_execution_options().get("sqlite_write", False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


def create_database_engine(settings: Settings) -> Engine:
    """Build the engine for the configured URL, with SQLite tuned for concurrent durable writes."""
    url = make_url(settings.database_url_text)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    # Without these, a connection into a network partition waits forever (the pre-ping too):
    # give up connecting after 5 s, and on unacknowledged data or silent peers after ~10 s.
    timeouts = {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        "tcp_user_timeout": 10_000,
    }
    return create_engine(
        url, hide_parameters=True, pool_pre_ping=True, pool_timeout=10, connect_args=timeouts
    )


class Database:
    """Owns the engine and opens request-scoped sessions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._read = sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._write = sessionmaker(
            engine.execution_options(sqlite_write=True), expire_on_commit=False, autoflush=False
        )
        # SQLite has one writer at a time. Threads of this process queue here and are woken
        # the moment the lock is free, instead of polling in SQLite's busy handler, whose
        # back-off sleeps up to 100 ms; other processes still wait under busy_timeout.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A unit of work: commits when the block ends, rolls back when it raises."""
        maker = self._write if write else self._read
        with ExitStack() as stack:
            if write and self._write_lock is not None:
                stack.enter_context(self._write_lock)
            session = stack.enter_context(maker())
            stack.enter_context(session.begin())
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
