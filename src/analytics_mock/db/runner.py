"""Runs database work off the event loop: `read` and `write` return once their work committed.

SQLite has one writer. One thread takes every unit queued and runs them in one IMMEDIATE
transaction, each write in a raw savepoint (a failed unit leaves no trace) and each read under
`PRAGMA query_only`, then commits once: one fsync for the lot (group commit).

PostgreSQL groups concurrent commits' WAL flushes itself: threads run one unit per transaction
on a pooled connection each. Reads run on a second connection per thread, in autocommit (each
statement reads its own snapshot, as under READ COMMITTED) and read-only by default.

A write submitted while `RIDER` is set (the middleware sets the call's journal entry there)
carries the rider's grouped write in its transaction, made from the unit's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from analytics_mock.db.watchdog import Guard, Watchdog

logger = logging.getLogger("analytics_mock.db")

T = TypeVar("T")
Unit = Callable[[Connection], T]
# Applies every value queued for it in one transaction.
Group = Callable[[Connection, list[Any]], None]
# A grouped write and how to make its value from the unit's error (None when it succeeded).
FollowUp = tuple[Group, Callable[[BaseException | None], Any]]
# Asked once per write at submission: the follow-up that write carries, if any.
RIDER: ContextVar[Callable[[], FollowUp | None] | None] = ContextVar(
    "analytics_mock.rider", default=None
)
# In `Connection.info`: the connection runs in autocommit, read-only (PostgreSQL reads).
READ_CONNECTION = "analytics_mock.read_connection"
# Bounds one SQLite batch, so a burst does not hold the write lock for long.
_MAX_BATCH = 256
# libpq's PQTRANS_INERROR, as psycopg reports a connection's transaction status.
_PQTRANS_INERROR = 3


@dataclass(eq=False)
class _Item:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    unit: Unit[Any]
    read: bool
    follow: FollowUp | None = None
    key: Hashable = None
    joiners: list[asyncio.Future[Any]] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None


def _settle(items: list[_Item]) -> None:
    for item in items:
        for future in (item.future, *item.joiners):
            if future.done():  # the caller went away (a cancelled request)
                continue
            if item.error is not None:
                future.set_exception(item.error)
            else:
                future.set_result(item.result)


def _made(item: _Item) -> tuple[Group, Any] | None:
    """The follow-up's write for the unit's outcome; None (logged) if it cannot be made."""
    if item.follow is None:
        return None
    try:
        return item.follow[0], item.follow[1](item.error)
    except Exception:
        logger.exception("a follow-up write could not be made")
        return None


def _aborted(connection: Connection) -> bool:
    """Whether PostgreSQL aborted the open transaction (a failed statement, even one caught)."""
    info = getattr(connection.connection.dbapi_connection, "info", None)
    status = getattr(info, "transaction_status", None)
    return status is not None and int(status) == _PQTRANS_INERROR


class UnitRunner:
    """Threads that each hold their connections and run queued units, as described above."""

    def __init__(
        self,
        engine: Engine,
        *,
        threads: int,
        write_lock: threading.Lock | None,
        watchdog: Watchdog | None = None,
        deadline: float = 0.0,
    ) -> None:
        # On SQLite the runner's transactions begin IMMEDIATE: a batch may hold writes.
        self._engine = engine.execution_options(sqlite_write=True)
        self._batches = engine.dialect.name == "sqlite"
        self._threads_wanted = threads
        self._write_lock = write_lock
        self._watchdog = watchdog
        self._deadline = deadline
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closing = False
        self.available = True
        # Shared reads still queued, by key and event loop: a caller that finds one joins it.
        self._shared: dict[tuple[Hashable, asyncio.AbstractEventLoop], _Item] = {}
        self._kicks: set[asyncio.AbstractEventLoop] = set()

    async def read(self, unit: Unit[T], *, share: Hashable = None) -> T:
        """Run a read-only `unit`; a write in it fails. With `share`, join a queued read of it.

        A run that has not started yet reads after every caller that joins it arrived, so each
        of them still sees every write that committed before its call.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._cond:
            item = self._shared.get((share, loop)) if share is not None else None
            if item is None:
                item = _Item(loop, future, unit, read=True, key=share)
                self._submit(item)
                if share is not None:
                    self._shared[(share, loop)] = item
            else:  # still queued (taken items leave `_shared` under this lock)
                item.joiners.append(future)
        return await future

    async def write(self, unit: Unit[T]) -> T:
        """Run `unit` in a transaction; a unit that raises leaves no trace of its writes.

        The rider set in `RIDER`, if it gives a follow-up, is written in the same transaction
        whatever the unit's outcome; on PostgreSQL its failure fails the unit too.
        """
        loop = asyncio.get_running_loop()
        ride = RIDER.get()
        item = _Item(loop, loop.create_future(), unit, read=False, follow=ride() if ride else None)
        with self._cond:
            self._submit(item)
        result: T = await item.future
        return result

    def close(self) -> None:
        """Finish the queued work, stop the threads and release their connections.

        Like `Engine.dispose`, it ends nothing for good: later work starts new threads.
        """
        with self._cond:
            self._closing = True
            threads, self._threads = self._threads, []
            self._cond.notify_all()
        for thread in threads:
            thread.join(timeout=30)
        with self._cond:
            self._closing = False

    def _submit(self, item: _Item) -> None:
        self._queue.append(item)
        if len(self._threads) < self._threads_wanted:
            thread = threading.Thread(
                target=self._work, name=f"analytics-mock-db-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        # Woken once per turn of the event loop, not once per unit: woken at once, a thread
        # took the GIL at the loop's next socket write and ran batches of one.
        if item.loop not in self._kicks:
            self._kicks.add(item.loop)
            item.loop.call_soon(self._kick, item.loop)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cond:
            self._kicks.discard(loop)
            self._cond.notify()

    def _take(self) -> list[_Item]:
        items: list[_Item] = []
        while self._queue and len(items) < (_MAX_BATCH if self._batches else 1):
            item = self._queue.popleft()
            if item.key is not None:
                del self._shared[(item.key, item.loop)]
            items.append(item)
        return items

    def _work(self) -> None:
        connections: dict[bool, Connection] = {}  # by whether it is the read connection
        try:
            while True:
                with self._cond:
                    while not self._queue:
                        if self._closing:
                            return
                        self._cond.wait()
                    items = self._take()
                    if self._queue:  # more than this batch holds: wake another thread for it
                        self._cond.notify()
                self._execute(connections, items, read=not self._batches and items[0].read)
                by_loop: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
                for item in items:
                    by_loop.setdefault(item.loop, []).append(item)
                for loop, settled in by_loop.items():
                    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                        loop.call_soon_threadsafe(_settle, settled)
        finally:
            for read, connection in connections.items():
                if read:  # never back to the pool in autocommit and read-only
                    connection.invalidate()
                connection.close()

    def _connect(self, read: bool) -> Connection:
        connection = self._engine.connect()
        if read:
            dbapi_connection = connection.connection.dbapi_connection
            assert dbapi_connection is not None
            connection.dialect.set_isolation_level(dbapi_connection, "AUTOCOMMIT")
            connection.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            connection.commit()
            connection.info[READ_CONNECTION] = True
        return connection

    def _execute(self, connections: dict[bool, Connection], items: list[_Item], read: bool) -> None:
        """Run one batch, retrying once on a fresh connection if a stale one failed early."""
        for attempt in (1, 2):
            committing = False
            guard: Guard | None = None
            connection = connections.get(read)
            try:
                if connection is None:
                    connection = connections[read] = self._connect(read)
                with contextlib.ExitStack() as stack:
                    if self._write_lock is not None:
                        stack.enter_context(self._write_lock)
                    if self._watchdog is not None:
                        dbapi_connection = connection.connection.dbapi_connection
                        guard = stack.enter_context(
                            self._watchdog.guard(dbapi_connection, self._deadline)
                        )
                    self._run(connection, items, read)
                    committing = True
                self.available = True
                return
            except Exception as exc:
                stale = connection is not None and (
                    connection.invalidated
                    or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
                )
                if stale and connection is not None:
                    connections.pop(read, None)
                    connection.close()
                # Before the commit nothing took effect, so the batch can run again as it was;
                # not after a deadline, which is spent.
                overran = guard is not None and guard.fired
                if stale or overran:
                    self.available = False
                if stale and attempt == 1 and not committing and not overran:
                    logger.info("database connection lost; retrying the batch on a new one")
                    continue
                for item in items:
                    item.result, item.error = None, item.error or exc
                    if item.follow is not None:
                        logger.error("a follow-up write was lost with its transaction")
                return

    def _run(self, connection: Connection, items: list[_Item], read: bool) -> None:
        if self._batches:
            self._batch(connection, items)
        elif read:
            with connection.begin():
                items[0].result, items[0].error = items[0].unit(connection), None
        else:
            self._alone(connection, items[0])

    def _batch(self, connection: Connection, items: list[_Item]) -> None:
        """SQLite: every item in one transaction, writes in savepoints, reads query-only."""
        groups: dict[Group, list[Any]] = {}
        with connection.begin():
            for item in items:
                item.result, item.error = None, None
                sql = connection.exec_driver_sql
                sql("PRAGMA query_only=1" if item.read else "SAVEPOINT unit")
                try:
                    item.result = item.unit(connection)
                except Exception as exc:
                    if connection.invalidated:
                        raise
                    item.error = exc
                    if not item.read:
                        sql("ROLLBACK TO unit")
                sql("PRAGMA query_only=0" if item.read else "RELEASE unit")
                if (made := _made(item)) is not None:
                    groups.setdefault(made[0], []).append(made[1])
            for group, values in groups.items():
                # Its failure undoes only its own writes: the units' stand.
                connection.exec_driver_sql("SAVEPOINT follow")
                try:
                    group(connection, values)
                except Exception:
                    if connection.invalidated:
                        raise
                    connection.exec_driver_sql("ROLLBACK TO follow")
                    logger.exception("a follow-up write was lost")
                connection.exec_driver_sql("RELEASE follow")

    def _alone(self, connection: Connection, item: _Item) -> None:
        """PostgreSQL: one write in its own transaction, with its follow-up."""
        item.result, item.error = None, None
        try:
            with connection.begin():
                item.result = item.unit(connection)
                if _aborted(connection):  # COMMIT would roll back without an error
                    raise RuntimeError("the database aborted the transaction")
                if (made := _made(item)) is not None:
                    made[0](connection, [made[1]])
            return
        except Exception as exc:
            if connection.invalidated or (
                isinstance(exc, DBAPIError) and exc.connection_invalidated
            ):
                raise
            item.result, item.error = None, exc
        # The unit failed and left nothing: its follow-up, made from the failure, alone.
        if (made := _made(item)) is not None:
            try:
                with connection.begin():
                    made[0](connection, [made[1]])
            except Exception:
                if connection.invalidated:
                    raise
                logger.exception("a follow-up write was lost")
