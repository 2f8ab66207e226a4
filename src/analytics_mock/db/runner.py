"""Runs the hot path's database work off the event loop, many requests to one transaction.

Each emulated call needs a few small units of database work (the test controls, the caller's
account, the handler, the journal entry). Giving each its own ORM session in the thread pool
cost more than the work itself, and every write its own fsync. Here, dedicated threads with
long-lived connections take whatever units are queued and run them in one transaction (a unit
that writes several statements in a savepoint of its own, so a failed unit leaves no trace),
apply the grouped writes (journal entries) in one statement, and commit once. A caller's await
returns only after that commit: an acknowledged write is on disk in the database's own sense.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from analytics_mock.db.watchdog import Guard, Watchdog

logger = logging.getLogger("analytics_mock.db")

T = TypeVar("T")
V = TypeVar("V")
Unit = Callable[[Connection], T]
# Applies every value queued for it in one batch; runs after the batch's units.
Group = Callable[[Connection, list[Any]], None]
# A grouped write that follows a unit in its transaction: the value is made, in the runner's
# thread, from the unit's error (None when it succeeded).
FollowUp = tuple[Group, Callable[[BaseException | None], Any]]

# Bounds one batch, so a burst does not hold the write lock longer than a few milliseconds.
_MAX_BATCH = 256


@dataclass(eq=False)
class _Item:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    unit: Unit[Any] | None = None
    savepoint: bool = False
    # One for each caller: a shared read's joiners bring theirs.
    follows: list[FollowUp] = field(default_factory=list)
    group: Group | None = None
    value: Any = None
    shared_key: object = None
    joiners: list[asyncio.Future[Any]] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = field(default=None)


# In a connection's `info`: whether the runner set its driver connection to autocommit.
_AUTOCOMMIT = "analytics_mock.autocommit"


def _one_read(items: list[_Item]) -> bool:
    """Whether a batch is a shared read alone (read-only, as `run_shared` requires)."""
    return len(items) == 1 and items[0].shared_key is not None


def _settle(items: list[_Item]) -> None:
    for item in items:
        for future in (item.future, *item.joiners):
            if future.done():  # the caller went away (a cancelled request)
                continue
            if item.error is not None:
                future.set_exception(item.error)
            else:
                future.set_result(item.result)


_UNMADE = object()


def _follow_up_value(follow: FollowUp, error: BaseException | None) -> Any:
    """The follow-up's value for the unit's outcome; `_UNMADE` (logged) if it cannot be made."""
    try:
        return follow[1](error)
    except Exception:
        logger.exception("a follow-up write could not be made")
        return _UNMADE


def _invalidated(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class UnitRunner:
    """Threads that each hold one connection and run queued units in shared transactions."""

    def __init__(
        self,
        engine: Engine,
        *,
        threads: int,
        units_per_batch: int,
        write_lock: threading.Lock | None,
        watchdog: Watchdog | None = None,
        deadline: float = 0.0,
    ) -> None:
        # On SQLite the runner's transactions begin IMMEDIATE: they all write (the journal).
        self._engine = engine.execution_options(sqlite_write=True)
        self._threads_wanted = threads
        self._units_per_batch = units_per_batch
        self._write_lock = write_lock
        self._watchdog = watchdog
        self._deadline = deadline
        # A failed statement aborts a whole PostgreSQL transaction (SQLite's fails alone), and a
        # savepoint around every unit would cost two round trips each: there a unit runs in a
        # transaction of its own, and grouped writes in batches without units.
        self._units_alone = engine.dialect.name != "sqlite"
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closing = False
        self.available = True
        # Shared reads still queued, by key and event loop: a caller that finds one joins it.
        self._shared: dict[tuple[object, asyncio.AbstractEventLoop], _Item] = {}
        self._kicks: set[asyncio.AbstractEventLoop] = set()

    async def run(
        self, unit: Unit[T], *, savepoint: bool = False, follow: FollowUp | None = None
    ) -> T:
        """Run `unit` with a connection inside a transaction; returns once it has committed.

        A unit that fails leaves no trace as long as it raises before it writes, or writes with
        one statement (atomic by itself); one that writes more must ask for a `savepoint`.
        `follow` is written whatever the unit's outcome, before this returns: in the unit's
        transaction, or where units run alone (PostgreSQL) with the grouped writes. Its failure
        is logged and is not the unit's.
        """
        if follow is not None and self._units_alone:
            return await self._run_then_follow(self.run(unit, savepoint=savepoint), follow)
        loop = asyncio.get_running_loop()
        item = _Item(loop, loop.create_future(), unit=unit, savepoint=savepoint)
        if follow is not None:
            item.follows.append(follow)
        self._submit(item)
        result: T = await item.future
        return result

    async def _run_then_follow(self, running: Awaitable[T], follow: FollowUp) -> T:
        # Where each unit has a transaction of its own (PostgreSQL), a follow-up there would cost
        # its statements per unit; it joins the grouped writes instead, which share batches.
        try:
            result = await running
        except Exception as exc:
            await self._follow(follow, exc)
            raise
        await self._follow(follow, None)
        return result

    async def _follow(self, follow: FollowUp, error: Exception | None) -> None:
        value = _follow_up_value(follow, error)
        if value is _UNMADE:
            return
        try:
            await self.run_grouped(follow[0], value)
        except Exception:
            logger.exception("a follow-up write was lost")

    async def run_shared(self, key: object, unit: Unit[T], *, follow: FollowUp | None = None) -> T:
        """Run a read-only `unit`, or join a queued run of the same `key` that has not started.

        A run that has not started yet reads after every caller that joins it arrived, so each
        of them still sees every write that committed before its call. Each caller's `follow`
        is written as `run` writes it, made from the shared outcome.
        """
        if follow is not None and self._units_alone:
            return await self._run_then_follow(self.run_shared(key, unit), follow)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._cond:
            item = self._shared.get((key, loop))
            if item is None:
                item = _Item(loop, future, unit=unit, shared_key=key)
                self._submit_locked(item)
                self._shared[(key, loop)] = item
            else:
                # Still queued (taken items leave `_shared` under this lock), so it runs later.
                item.joiners.append(future)
            if follow is not None:
                item.follows.append(follow)
        return await future

    async def run_grouped(self, group: Group, value: object) -> None:
        """Queue `value` for `group`, which gets every value queued with it in the same batch."""
        loop = asyncio.get_running_loop()
        item = _Item(loop, loop.create_future(), group=group, value=value)
        self._submit(item)
        await item.future

    def close(self) -> None:
        """Finish the queued work, stop the threads and close their connections.

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
        with self._cond:
            self._submit_locked(item)

    def _submit_locked(self, item: _Item) -> None:
        self._queue.append(item)
        if len(self._threads) < self._threads_wanted:
            self._start_thread()
        # The runner is woken once per turn of the event loop, not once per unit: woken at
        # once, it took the GIL at the loop's next socket write and ran batches of one, a
        # commit (and an fsync) per unit. Every unit queued in the same turn now shares one.
        if item.loop not in self._kicks:
            self._kicks.add(item.loop)
            item.loop.call_soon(self._kick, item.loop)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cond:
            self._kicks.discard(loop)
            self._cond.notify()

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"analytics-mock-db-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _take(self) -> list[_Item]:
        items: list[_Item] = []
        units = 0
        while self._queue and len(items) < _MAX_BATCH:
            if self._queue[0].unit is not None:
                if units == self._units_per_batch or (self._units_alone and items):
                    break
                units += 1
            elif self._units_alone and units:
                break
            item = self._queue.popleft()
            if item.shared_key is not None:
                del self._shared[(item.shared_key, item.loop)]
            items.append(item)
        return items

    def _work(self) -> None:
        connection: Connection | None = None
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        return
                    items = self._take()
                    if self._queue:  # more than this batch holds: wake another thread for it
                        self._cond.notify()
                connection = self._execute(connection, items)
                by_loop: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
                for item in items:
                    by_loop.setdefault(item.loop, []).append(item)
                for loop, settled in by_loop.items():
                    # A closed event loop raises: nobody is waiting there any more.
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(_settle, settled)
        finally:
            if connection is not None:
                self._release(connection)

    def _execute(self, connection: Connection | None, items: list[_Item]) -> Connection | None:
        """Run one batch, retrying once on a fresh connection if a stale one failed early."""
        for attempt in (1, 2):
            committing = False
            guard: Guard | None = None
            try:
                if connection is None:
                    connection = self._engine.connect()
                self._set_autocommit(connection, self._units_alone and _one_read(items))
                with contextlib.ExitStack() as stack:
                    if self._write_lock is not None:
                        stack.enter_context(self._write_lock)
                    if self._watchdog is not None:
                        dbapi_connection = connection.connection.dbapi_connection
                        guard = stack.enter_context(
                            self._watchdog.guard(dbapi_connection, self._deadline)
                        )
                    with connection.begin():
                        self._apply(connection, items)
                        committing = True
                self.available = True
                return connection
            except Exception as exc:
                stale = connection is not None and (connection.invalidated or _invalidated(exc))
                if stale and connection is not None:
                    self._release(connection)
                    connection = None
                # Before the commit nothing took effect, so the batch can run again as it was;
                # not after a deadline, which is spent.
                overran = guard is not None and guard.fired
                if stale or overran:
                    self.available = False
                if stale and attempt == 1 and not committing and not overran:
                    logger.info("database connection lost; retrying the batch on a new one")
                    continue
                for item in items:
                    # A unit's own error says more than the failed commit that followed it.
                    item.result, item.error = None, item.error or exc
                    for _ in item.follows:
                        logger.error("a follow-up write was lost with its transaction")
                return connection
        return connection

    @staticmethod
    def _set_autocommit(connection: Connection, on: bool) -> None:
        # A shared read where units run alone (PostgreSQL) needs no transaction: under READ
        # COMMITTED each statement reads its own snapshot either way, and BEGIN and COMMIT
        # would double its round trips. Set on the driver's connection: SQLAlchemy's
        # `execution_options(isolation_level=...)` adds a reset callback per call to a
        # connection the runner never gives back, so its list would grow without end.
        if connection.info.get(_AUTOCOMMIT, False) == on:
            return
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None  # a checked-out, valid connection
        if on:
            connection.dialect.set_isolation_level(dbapi_connection, "AUTOCOMMIT")
        else:
            connection.dialect.reset_isolation_level(dbapi_connection)
        connection.info[_AUTOCOMMIT] = on

    def _release(self, connection: Connection) -> None:
        """Give the connection back to the pool as the pool handed it out."""
        try:
            if not connection.invalidated:
                self._set_autocommit(connection, False)
        except Exception:
            connection.invalidate()
        connection.close()

    @staticmethod
    def _run_unit(connection: Connection, item: _Item) -> None:
        assert item.unit is not None
        try:
            if item.savepoint:
                with connection.begin_nested():
                    item.result = item.unit(connection)
            else:
                item.result = item.unit(connection)
        except Exception as exc:
            if connection.invalidated:
                raise
            item.error = exc

    def _apply(self, connection: Connection, items: list[_Item]) -> None:
        # Each value with the item that waits for it; a follow-up's has none.
        groups: dict[Group, list[tuple[Any, _Item | None]]] = {}
        for item in items:
            item.result, item.error = None, None
            if item.unit is None:
                assert item.group is not None
                groups.setdefault(item.group, []).append((item.value, item))
                continue
            self._run_unit(connection, item)
            for follow in item.follows:
                value = _follow_up_value(follow, item.error)
                if value is not _UNMADE:
                    groups.setdefault(follow[0], []).append((value, None))
        # A group alone in its transaction needs no savepoint (two round trips on PostgreSQL):
        # its failure rolls the whole transaction back, and fails only its own members.
        alone = len(groups) == 1 and all(item.unit is None for item in items)
        for group, members in groups.items():
            if alone:
                group(connection, [value for value, _ in members])
                continue
            try:
                with connection.begin_nested():
                    group(connection, [value for value, _ in members])
            except Exception as exc:
                if connection.invalidated:
                    raise
                for _, member in members:
                    if member is not None:
                        member.error = exc
                if any(member is None for _, member in members):
                    logger.exception("a follow-up write was lost")
