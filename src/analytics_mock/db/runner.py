"""Runs database work off the event loop: `read` and `write` return once their work committed.

One thread with one connection runs the queued writes in one transaction, committed once: calls
share its fsync and never wait on each other's row locks. A unit that fails leaves nothing. On
SQLite each write runs in a raw savepoint, released at once (one left open journals pages
again); on PostgreSQL, where a savepoint is a round trip, a batch runs without them and, if a
unit fails, is rolled back and runs again with one per write, ended by the commit. SQLite's
reads join the batches under `PRAGMA query_only`; PostgreSQL's run beside them, READ ONLY in
autocommit. A write made while `RIDER` is set carries the call's journal entry, as does a read
that answers the call (SQLite).
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

from analytics_mock.db.failures import aborted, busy, lost, reported
from analytics_mock.db.prepared import Sql, statement_runner
from analytics_mock.db.watchdog import Guard
from analytics_mock.logs import Throttled

logger = logging.getLogger("analytics_mock.db")

T = TypeVar("T")
Unit = Callable[[Connection], T]
# Applies every value queued for it in one batch, after the batch's units.
Group = Callable[[Connection, list[Any]], None]
# A grouped write and how to make its value from the unit's error (None when it succeeded).
FollowUp = tuple[Group, Callable[[BaseException | None], Any]]
# Asked once per write (and read that answers the call) as it is submitted: its follow-up, if any.
RIDER: ContextVar[Callable[[], FollowUp | None] | None] = ContextVar(
    "analytics_mock.rider", default=None
)
# In `Connection.info`: the connection runs in autocommit, read-only (PostgreSQL's readers).
READ_CONNECTION = "analytics_mock.read_connection"
# Bounds one batch, so a burst does not hold the write lock for long.
_MAX_BATCH = 256


@dataclass(eq=False)
class _Item:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    unit: Unit[Any]
    read: bool
    # The follow-ups written after the unit: its own, and those of the calls that joined it.
    follows: list[FollowUp] = field(default_factory=list)
    key: Hashable = None
    joiners: list[asyncio.Future[Any]] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None
    # A read that ran before any write of its batch changed a row: it saw only committed data.
    clean: bool = False


def _settle(items: list[_Item]) -> None:
    for item in items:
        for future in (item.future, *item.joiners):
            if future.done():  # the caller went away (a cancelled request)
                continue
            if item.error is not None:
                future.set_exception(item.error)
            else:
                future.set_result(item.result)


class UnitRunner:
    """One writing thread, and on PostgreSQL `readers` reading threads, as described above."""

    def __init__(
        self,
        engine: Engine,
        *,
        readers: int,
        hold: Callable[[Connection], contextlib.AbstractContextManager[Guard | None]],
        precheck: Callable[[], None] | None = None,
    ) -> None:
        # On SQLite the runner's transactions begin IMMEDIATE: a batch may hold writes.
        self._engine = engine.execution_options(write=True)
        # Held around each transaction: a lock, a deadline (whose guard tells if it fired).
        self._hold = hold
        # Raises when the batch must not run (the SQLite file was replaced): it fails whole.
        self._precheck = precheck
        self._savepoints_first = engine.dialect.name == "sqlite"
        # Queues by role: True for the reading threads, False for the writer (all on SQLite).
        self._wanted = {False: 1, True: readers}
        self._queues: dict[bool, deque[_Item]] = {False: deque(), True: deque()}
        self._lock = threading.Lock()
        self._ready = {role: threading.Condition(self._lock) for role in (False, True)}
        self._threads: dict[bool, list[threading.Thread]] = {False: [], True: []}
        self._closing = False
        self.available = True
        # Follow-up writes (journal entries) lost: counted, logged at most once a minute.
        self.follow_ups_lost = Throttled(logger, "journal entries lost")
        # Shared reads still queued, by key and event loop: a caller that finds one joins it.
        self._shared: dict[tuple[Hashable, asyncio.AbstractEventLoop], _Item] = {}
        self._kicks: set[asyncio.AbstractEventLoop] = set()

    async def read(self, unit: Unit[T], *, share: Hashable = None, answers: bool = False) -> T:
        """As `Database.read`; the `RIDER`'s follow-up rides only where reads join the batches."""
        rides = answers and not self._wanted[True]
        return await self._run(unit, read=True, share=share, rides=rides)

    async def write(self, unit: Unit[T]) -> T:
        """As `Database.write`; the `RIDER`'s follow-up fails alone, logged."""
        return await self._run(unit, read=False, share=None, rides=True)

    async def _run(self, unit: Unit[T], *, read: bool, share: Hashable, rides: bool) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        ride = RIDER.get() if rides else None
        follow = ride() if ride else None
        with self._lock:
            item = self._shared.get((share, loop)) if share is not None else None
            if item is None:
                item = _Item(loop, future, unit, read=read, key=share)
                self._submit(item)
                if share is not None:
                    self._shared[(share, loop)] = item
            else:  # still queued (taken items leave `_shared` under this lock)
                item.joiners.append(future)
            if follow is not None:
                item.follows.append(follow)
        return await future

    def close(self) -> None:
        """Finish the queued work and stop the threads; later work starts new ones."""
        with self._lock:
            self._closing = True
            threads = [*self._threads[False], *self._threads[True]]
            self._threads = {False: [], True: []}
            for ready in self._ready.values():
                ready.notify_all()
        for thread in threads:
            thread.join(timeout=30)
        with self._lock:
            self._closing = False

    def _submit(self, item: _Item) -> None:
        role = item.read and self._wanted[True] > 0
        self._queues[role].append(item)
        if len(threads := self._threads[role]) < self._wanted[role]:
            name = f"analytics-mock-db-{'read' if role else 'write'}-{len(threads)}"
            threads.append(threading.Thread(target=self._work, args=(role,), name=name))
            threads[-1].daemon = True
            threads[-1].start()
        # Woken once per turn of the event loop, not once per unit: woken at once, the writer
        # took the GIL at the loop's next socket write and ran batches of one.
        if item.loop not in self._kicks:
            self._kicks.add(item.loop)
            item.loop.call_soon(self._kick, item.loop)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._kicks.discard(loop)
            for role, queue in self._queues.items():
                if queue:
                    self._ready[role].notify()

    def _take(self, role: bool) -> list[_Item]:
        queue, items = self._queues[role], list[_Item]()
        while queue and len(items) < (1 if role else _MAX_BATCH):
            items.append(item := queue.popleft())
            self._shared.pop((item.key, item.loop), None)  # a shared read is joined no more
        return items

    def _work(self, role: bool) -> None:
        connection: Connection | None = None
        try:
            while True:
                with self._lock:
                    while not self._queues[role]:
                        if self._closing:
                            return
                        self._ready[role].wait()
                    items = self._take(role)
                    if self._queues[role]:  # more than this batch: wake another thread for it
                        self._ready[role].notify()
                connection = self._execute(connection, items, role)
                for loop in {item.loop for item in items}:
                    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                        loop.call_soon_threadsafe(_settle, [i for i in items if i.loop is loop])
        finally:
            if connection is not None:
                if role:  # never back to the pool in autocommit and read-only
                    connection.invalidate()
                connection.close()

    def _connect(self, role: bool) -> Connection:
        connection = self._engine.connect()
        if role:
            dbapi_connection: Any = connection.connection.dbapi_connection
            connection.dialect.set_isolation_level(dbapi_connection, "AUTOCOMMIT")
            connection.info[READ_CONNECTION] = True
            connection.exec_driver_sql("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            connection.commit()
        return connection

    def _execute(
        self, connection: Connection | None, items: list[_Item], role: bool
    ) -> Connection | None:
        """Run one batch, retrying once on a fresh connection if a stale one failed early."""
        savepoints, retried = self._savepoints_first or role, False  # a read never runs again
        while True:
            committing = False
            guard: Guard | None = None
            try:
                if self._precheck is not None:
                    self._precheck()
                if connection is None:
                    connection = self._connect(role)
                with self._hold(connection) as guard, connection.begin():
                    if role:
                        items[0].result, items[0].error = items[0].unit(connection), None
                    else:
                        self._batch(connection, items, savepoints=savepoints)
                    committing = True
                self.available = True
                return connection
            except Exception as exc:
                stale = lost(connection, exc)
                if stale and connection is not None:
                    connection.close()
                    connection = None
                # Before the commit nothing took effect, so the batch can run again as it was;
                # not after a deadline, which is spent.
                overran = guard is not None and guard.fired
                if not (savepoints or committing or overran or connection is None):
                    savepoints = True  # a unit failed where it had no savepoint: see the module
                    continue
                # No connection to be had, or a SQLite lock held past the busy timeout: the
                # call's journal entry would wait once more, so it answers within one timeout.
                if stale or overran or connection is None or busy(exc):
                    self.available = False
                if stale and not retried and not committing and not overran:
                    logger.info("database connection lost; retrying the batch on a new one")
                    retried = True
                    continue
                self._fail(items, reported(exc), committed_units=committing)
                return connection

    def _fail(self, items: list[_Item], exc: BaseException, *, committed_units: bool) -> None:
        """The batch's transaction failed with `exc`; `committed_units`: only its commit did."""
        for item in items:
            # A clean read's answer stands when only the commit failed (a full disk, journal
            # entries that could not be written): it read no write of the batch.
            if not (committed_units and item.read and item.clean):
                item.result, item.error = None, item.error or exc
        if dropped := sum(len(item.follows) for item in items):
            self.follow_ups_lost(dropped)

    def _batch(self, connection: Connection, items: list[_Item], *, savepoints: bool) -> None:
        """Every item in the open transaction, reads query-only: see the module for writes."""
        dbapi_connection: Any = connection.connection.dbapi_connection
        sql = statement_runner(dbapi_connection)
        # SQLite counts the rows changed on a connection; a read is clean while it has not moved.
        changes = getattr(dbapi_connection, "total_changes", None)
        for item in items:
            item.result, item.error = None, None
            item.clean = changes is not None and dbapi_connection.total_changes == changes
            if item.read or savepoints:
                sql("PRAGMA query_only=1" if item.read else "SAVEPOINT unit")
            try:
                item.result = item.unit(connection)
                if aborted(connection):  # PostgreSQL: a failed statement the unit caught
                    raise RuntimeError("the database aborted a statement of the unit")
            except Exception as exc:
                if lost(connection, exc) or not (item.read or savepoints):
                    raise  # a lost connection fails the batch; a failed unit, see the module
                item.result, item.error = None, reported(exc)
                if not item.read:
                    sql("ROLLBACK TO unit")
            if item.read or changes is not None:  # only SQLite counts changes: see the module
                sql("PRAGMA query_only=0" if item.read else "RELEASE unit")
        self._follow(connection, sql, items)

    def _follow(self, connection: Connection, sql: Sql, items: list[_Item]) -> None:
        """Write the items' follow-ups, made from their outcomes; a group fails alone."""
        groups: dict[Group, list[Any]] = {}
        for item in items:
            for group, make in item.follows:
                try:
                    groups.setdefault(group, []).append(make(item.error))
                except Exception:
                    logger.exception("a follow-up write could not be made")
        for group, values in groups.items():
            sql("SAVEPOINT follow")  # its failure undoes only its own writes: the units' stand
            try:
                group(connection, values)
            except Exception as exc:
                if lost(connection, exc):
                    raise
                sql("ROLLBACK TO follow")
                self.follow_ups_lost(len(values), exc_info=True)
            sql("RELEASE follow")
