"""The engine and the two verbs for database work, `Database.read` and `Database.write`."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.session import JoinTransactionMode

from analytics_mock.db.extras import require_extra
from analytics_mock.db.failures import reported
from analytics_mock.db.prepared import run_sql
from analytics_mock.db.runner import READ_CONNECTION, Unit, UnitRunner
from analytics_mock.db.watchdog import Guard, Watchdog
from analytics_mock.logs import Throttled
from analytics_mock.settings import Settings

logger = logging.getLogger("analytics_mock.db")

T = TypeVar("T")
# Seconds a unit of database work may take on PostgreSQL before its connection is cut.
DEFAULT_TIMEOUT = 10.0
# Key of the PostgreSQL advisory lock that every writing transaction holds ("am_write").
WRITERS_LOCK_KEY = 0x616D5F7772697465


def _switch_to_wal(cursor: Any, timeout: float) -> None:
    # Two processes opening a fresh file at once both try to switch it to WAL; SQLite answers
    # the loser "database is locked" at once rather than through the busy handler (the wait
    # could deadlock), so the wait is here.
    deadline = time.monotonic() + timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # extended codes too
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


# Free space under which a SQLite database's file system counts as full for readiness.
MIN_FREE_BYTES = 1024 * 1024


class DatabaseFileReplaced(OperationalError):
    """The SQLite file at the configured path is no longer the one this process opened."""

    def __init__(self, path: str) -> None:
        super().__init__(
            None,
            None,
            Exception(f"the database file {path} was deleted or replaced under the server"),
        )


# A SQLite file's (st_dev, st_ino): the file the server opened, whatever the path names later.
Identity = tuple[int, int]


class FileIdentity:
    """The identity (device, inode) of the SQLite file as first opened, and a check against it.

    A write into a file that was deleted or replaced goes to an unlinked inode and is lost at
    restart: every batch checks first, and fails instead of acknowledging it. The workers of
    one server share the supervisor's `expected` identity, so that a worker started after the
    replacement refuses the new file as the others do, rather than serving a second state.
    """

    def __init__(self, path: str, expected: Identity | None = None) -> None:
        self.path = path
        self._opened: Identity | None = expected

    @property
    def identity(self) -> Identity | None:
        """The file's identity once fixed (by the first open, or given)."""
        return self._opened

    def fix(self) -> None:
        """Fix the identity to the file at the path now, unless already fixed."""
        if self._opened is None:
            self._opened = self._current()

    def intact(self) -> bool:
        """Whether the path still names the file (true while none was fixed)."""
        return self._opened is None or self._current() == self._opened

    def _current(self) -> Identity | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def opened(self) -> None:
        """A connection opened the file: the first one fixes its identity."""
        self.fix()
        self.check()

    def has_room(self) -> bool:
        """Whether the file's file system has `MIN_FREE_BYTES` free for the server's writes.

        A write that fits in the WAL's reused frames succeeds on a full disk; the next larger
        one fails. Readiness counts such a disk as full.
        """
        try:
            stat = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize >= MIN_FREE_BYTES

    def check(self) -> None:
        """Raise `DatabaseFileReplaced` if the path no longer names the file first opened."""
        if not self.intact():
            raise DatabaseFileReplaced(self.path)


# A checkpoint that must restart the WAL waits this long for other processes' readers (and
# holds off writers meanwhile); after one they kept from finishing, the next try waits a while.
CHECKPOINT_WAIT_MS = 200
CHECKPOINT_RETRY_SECONDS = 1.0
# How often a writer looks at the WAL's size at most: a look after every commit (a stat and a
# query) cost a commit at one connection about 5 % of its latency.
LOOK_INTERVAL_SECONDS = 0.1


class WalBound:
    """Keeps the WAL within `journal_size_limit` though readers of other processes overlap.

    SQLite's own checkpoints (PASSIVE, from 1,000 pages) copy the WAL into the database, but the
    WAL restarts from its beginning only when no reader holds a snapshot in it: readers in other
    processes (other workers, a backup) whose transactions overlap keep it growing for as long
    as they do (92 MB in 20 s of writes under two such readers). Past the limit, the writer
    follows its commit with a TRUNCATE checkpoint, which waits up to `CHECKPOINT_WAIT_MS` for
    the readers that hold an old snapshot; new readers read the database file meanwhile.
    """

    def __init__(self, path: str) -> None:
        self.wal = f"{path}-wal"
        self._limit: int | None = None
        self._next_look = 0.0

    def __call__(self, connection: Connection) -> None:
        """After a commit on `connection` (in autocommit, holding this process's write lock)."""
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + LOOK_INTERVAL_SECONDS
        try:
            size = os.stat(self.wal).st_size
        except OSError:
            return
        sql: Any = connection.connection.dbapi_connection
        if self._limit is None:
            [self._limit] = sql.execute("PRAGMA journal_size_limit").fetchone()
        if size == 0 or self._limit < 0 or size <= self._limit:
            return
        [timeout] = sql.execute("PRAGMA busy_timeout").fetchone()
        sql.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS:d}")
        try:
            [busy, _, _] = sql.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError:  # another process's writer held on past the wait
            busy = 1
        finally:
            sql.execute(f"PRAGMA busy_timeout={int(timeout):d}")
        if busy:
            self._next_look = time.monotonic() + CHECKPOINT_RETRY_SECONDS


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
        cursor.execute(f"PRAGMA busy_timeout={settings.sqlite_busy_timeout_ms:d}")
        _switch_to_wal(cursor, settings.sqlite_busy_timeout_ms / 1000)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={settings.sqlite_synchronous}")
        # The WAL keeps its largest size unless told: truncated to this once checkpointed.
        cursor.execute(f"PRAGMA journal_size_limit={settings.sqlite_wal_size_limit:d}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY
        # when another connection wrote in between; IMMEDIATE takes the write lock up front
        # and waits for it under busy_timeout instead.
        # On the driver's cursor: through SQLAlchemy the statement cost 35 us of a batch's 40.
        write = connection.get_execution_options().get("write", False)
        run_sql(connection, "BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def create_database_engine(settings: Settings) -> Engine:
    """Build the engine for the configured URL, with SQLite tuned for concurrent durable writes."""
    url = make_url(settings.database_url_text)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    if url.get_driver_name() == "psycopg":
        require_extra("psycopg", "postgres", "PostgreSQL support (psycopg)")
    # Without these, a connection into a network partition waits forever (the pre-ping too):
    # give up connecting after half the deadline (a checkout may ping first, see `_ping`; libpq
    # takes whole seconds, at least 2), and on unacknowledged data or silent peers after ~10 s.
    timeouts = {
        "connect_timeout": max(2, math.ceil(settings.database_timeout / 2)),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        "tcp_user_timeout": 10_000,
    }
    # No pool_pre_ping: `Database` pings at checkout itself, under a deadline.
    engine = create_engine(
        url, hide_parameters=True, pool_size=8, pool_timeout=10, connect_args=timeouts
    )

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # The writing transactions of every process take turns, as SQLite's do: two processes'
        # batches (or a reset and a batch) would otherwise lock rows in opposite orders, and
        # PostgreSQL would end one with a deadlock error. Its readers take no lock.
        write = connection.get_execution_options().get("write", False)
        if write and not connection.info.get(READ_CONNECTION):
            run_sql(connection, f"SELECT pg_advisory_xact_lock({WRITERS_LOCK_KEY:d})")

    return engine


class Database:
    """Owns the engine. Requests reach the database through `read` and `write` only."""

    def __init__(
        self,
        engine: Engine,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        file_identity: Identity | None = None,
    ) -> None:
        """`file_identity`: the SQLite file the server opened first (see `FileIdentity`)."""
        self.engine = engine
        self.dialect = engine.dialect.name
        self.timeout = timeout
        self._write_engine = engine.execution_options(write=True)
        sqlite = self.dialect == "sqlite"
        path = engine.url.database
        on_disk = sqlite and path and path != ":memory:"
        self.file = FileIdentity(path, file_identity) if on_disk and path else None
        if self.file is not None:
            self.file.fix()
            # A new connection must open the same file; the first one fixes it if none existed.
            event.listen(engine, "connect", lambda _dbapi, _record: self._opened())
        # One writing transaction at a time in this process. On SQLite, threads queue here and
        # are woken the moment the lock is free, instead of polling in SQLite's busy handler,
        # whose back-off sleeps up to 100 ms; other processes still wait under busy_timeout.
        # On PostgreSQL, processes take turns on an advisory lock (`create_database_engine`);
        # within one, threads queue here rather than each holding a pooled connection.
        self._write_lock = threading.Lock()
        self._wal_bound = WalBound(self.file.path) if self.file is not None else None
        # A local file needs no deadline; a network database does (see watchdog.py).
        self.watchdog = None if sqlite else Watchdog()
        if self.watchdog is not None:
            event.listen(engine, "checkout", self._ping)
        self.runner = UnitRunner(
            engine,
            # SQLite's one writer reads too; PostgreSQL reads beside it.
            readers=0 if sqlite else 3,
            hold=partial(self._held, write=True),
            precheck=self.file.check if self.file is not None else None,
        )

    @property
    def available(self) -> bool:
        """False from a failed connection or an overrun deadline until the next commit."""
        return self.runner.available

    def _opened(self) -> None:
        assert self.file is not None
        self.file.opened()

    def has_room(self) -> bool:
        """False when a SQLite file's disk is (nearly) full; PostgreSQL's is the server's."""
        return self.file is None or self.file.has_room()

    @property
    def journal_losses(self) -> Throttled:
        """Journal entries lost (a full disk, a lost connection): counted, logged throttled."""
        return self.runner.follow_ups_lost

    async def read(self, unit: Unit[T], *, share: Hashable = None, answers: bool = False) -> T:
        """Run a read-only `unit` off the event loop; a write in it fails.

        Callers that name the same `share` key while a read of it is still queued share that
        one run (and its result): the key must name everything the result depends on.
        `answers`: the call answers with this read's outcome (no database work follows it), so
        the call's journal entry may ride along (see `runner.RIDER`).
        """
        return await self.runner.read(unit, share=share, answers=answers)

    async def write(self, unit: Unit[T]) -> T:
        """Run `unit` in a transaction off the event loop; returns once it has committed.

        A unit that raises leaves none of its writes. The call's journal entry rides along
        (see `runner.RIDER`).
        """
        return await self.runner.write(unit)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A blocking unit of work for start-up, the command line and tests (no event loop).

        Commits when the block ends, rolls back when it raises. Requests use `read`/`write`.
        A database error is raised as the runner reports it (`failures.reported`).
        """
        try:
            with ExitStack() as stack:
                connection = stack.enter_context(
                    (self._write_engine if write else self.engine).connect()
                )
                stack.enter_context(self._held(connection, write=write))
                session = stack.enter_context(
                    Session(bind=connection, expire_on_commit=False, autoflush=False)
                )
                stack.enter_context(session.begin())
                yield session
        except DBAPIError as exc:
            error = reported(exc)
            if error is exc:
                raise
            raise error from exc

    @contextmanager
    def _held(self, connection: Connection, *, write: bool) -> Iterator[Guard | None]:
        """What work on `connection` holds: this process's write lock, PostgreSQL's deadline."""
        with ExitStack() as stack:
            if write and not connection.info.get(READ_CONNECTION):  # PostgreSQL's readers
                stack.enter_context(self._write_lock)
            guard = None
            if self.watchdog is not None:
                dbapi_connection = connection.connection.dbapi_connection
                guard = stack.enter_context(self.watchdog.guard(dbapi_connection, self.timeout))
            yield guard
            # The work committed, and this process still holds the write lock: WAL upkeep.
            if write and self._wal_bound is not None:
                try:
                    self._wal_bound(connection)
                except Exception:  # the work committed; its answers stand
                    logger.warning("upkeep after a commit failed", exc_info=True)

    def dispose(self) -> None:
        """Stop the runner and close every pooled connection."""
        self.runner.close()
        if self.watchdog is not None:
            self.watchdog.close()
        self.engine.dispose()

    def _ping(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # What pool_pre_ping does, but under a deadline: a pooled connection whose server hangs
        # would otherwise hold the checkout forever. Half of it: a failed ping makes the pool
        # connect anew (the other half, `connect_timeout`), and the whole checkout fits in one.
        assert self.watchdog is not None
        with self.watchdog.guard(dbapi_connection, self.timeout / 2):
            try:
                cursor = dbapi_connection.cursor()
                cursor.execute("SELECT 1")
                cursor.close()
                dbapi_connection.rollback()
            except Exception as exc:
                # Tells the pool to discard this connection and check out another.
                raise DisconnectionError("the pooled connection does not answer") from exc


def orm(fn: Callable[[Session], T]) -> Unit[T]:
    """`fn` as a unit, with an ORM session on the unit's connection (writes of ORM objects)."""

    def unit(connection: Connection) -> T:
        # A savepoint of its own: a failed flush rolls the session back to it, never further
        # (on SQLite the transaction is the batch's). A read-only connection has no savepoints.
        mode: JoinTransactionMode = (
            "rollback_only" if connection.info.get(READ_CONNECTION) else "create_savepoint"
        )
        with Session(
            bind=connection, expire_on_commit=False, autoflush=False, join_transaction_mode=mode
        ) as session:
            result = fn(session)
            session.commit()
            return result

    return unit
