"""Runs the hot path's database work off the event loop, many requests to one transaction.

Each emulated call needs a few small units of database work (the test controls, the caller's
account, the handler, the journal entry). Giving each its own ORM session in the thread pool
cost more than the work itself, and every write its own fsync. Here, dedicated threads with
long-lived connections take whatever units are queued and run them in one transaction (a unit
that writes several statements in a savepoint of its own, so a failed unit leaves no trace),
apply the grouped writes (journal entries) in one statement, and commit once. A caller's await
returns only after that commit: an acknowledged write is on disk in the database's own sense.

On PostgreSQL a failed statement aborts the whole transaction, where SQLite's fails alone. A
savepoint around every unit would cost two round trips each, so a batch runs without them, and
one that the database aborted (a unit's failed statement, a failed group, a deadlock) is rolled
back whole and run again one item at a time, each unit then in a savepoint: every unit and group
ends as it would have alone. One thread runs units at a time (shared reads and grouped writes,
which lock no rows, run beside it), so the runner's own transactions never wait on each other's
row locks in a cycle, and the units queued meanwhile make the next batch.
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

from analytics_mock.db.held_rows import HeldRows, attach, detach
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


def _writes(item: _Item) -> bool:
    """Whether an item is a unit that may write (a shared read is read-only)."""
    return item.unit is not None and item.shared_key is None


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


def _fail(items: list[_Item], exc: BaseException) -> None:
    """Mark every item of a batch whose transaction did not commit as failed."""
    for item in items:
        # A unit's own error says more than the failed commit that followed it.
        item.result, item.error = None, item.error or exc
        for _ in item.follows:
            logger.error("a follow-up write was lost with its transaction")


def _invalidated(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


# libpq's PQTRANS_INERROR, as psycopg (and psycopg2) report a connection's transaction status.
_PQTRANS_INERROR = 3


def _transaction_aborted(connection: Connection) -> bool:
    """Whether the database has aborted the open transaction (PostgreSQL, after an error)."""
    info = getattr(connection.connection.dbapi_connection, "info", None)
    status = getattr(info, "transaction_status", None)
    return status is not None and int(status) == _PQTRANS_INERROR


class _Aborted(Exception):
    """The database aborted a batch's transaction: its items run again one at a time."""


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
        # Where a failed statement aborts the whole transaction (PostgreSQL), a batch runs without
        # savepoints and is run again item by item if the database aborts it; a shared read runs
        # alone, outside a transaction, on any thread; and one thread at a time runs units.
        self._aborts = engine.dialect.name != "sqlite"
        # A thread runs units (under `_cond`): the next batch of them waits and grows meanwhile.
        self._writing = False
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
        `follow` is written whatever the unit's outcome, in the unit's transaction, before this
        returns. Its failure is logged and is not the unit's.
        """
        loop = asyncio.get_running_loop()
        item = _Item(loop, loop.create_future(), unit=unit, savepoint=savepoint)
        if follow is not None:
            item.follows.append(follow)
        self._submit(item)
        result: T = await item.future
        return result

    async def _run_then_follow(self, running: Awaitable[T], follow: FollowUp) -> T:
        # A shared read outside a transaction (PostgreSQL) has none for a follow-up to join: it
        # joins the grouped writes instead, which share batches.
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
        if follow is not None and self._aborts:
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
        """The next batch, taken off the queue under `_cond`; empty when none may start yet."""
        if not self._aborts:
            return self._take_run(units=True)
        head = self._queue[0]
        # A shared read runs alone, outside a transaction; grouped writes lock no rows: both
        # run beside the writer. Units wait for it, and then make one batch.
        if head.shared_key is not None:
            return [self._take_shared(head)]
        if head.unit is None:
            return self._take_run(units=False)
        if not self._writing:
            self._writing = True
            return self._take_run(units=True)
        shared = next((item for item in self._queue if item.shared_key is not None), None)
        return [self._take_shared(shared)] if shared is not None else []

    def _take_run(self, *, units: bool) -> list[_Item]:
        """Items from the head of the queue within a batch's bounds; without `units`, up to the
        first unit. Where shared reads run alone, up to the first of them."""
        items: list[_Item] = []
        taken = 0
        while self._queue and len(items) < _MAX_BATCH:
            head = self._queue[0]
            if self._aborts and head.shared_key is not None:
                break
            if head.unit is not None:
                if not units or taken == self._units_per_batch:
                    break
                taken += 1
            item = self._queue.popleft()
            if item.shared_key is not None:
                del self._shared[(item.shared_key, item.loop)]
            items.append(item)
        return items

    def _take_shared(self, item: _Item) -> _Item:
        self._queue.remove(item)
        del self._shared[(item.shared_key, item.loop)]
        return item

    def _work(self) -> None:
        connection: Connection | None = None
        try:
            while True:
                with self._cond:
                    items = self._take() if self._queue else []
                    while not items:
                        if self._closing and not self._queue:
                            return
                        self._cond.wait()
                        items = self._take() if self._queue else []
                    if self._queue:  # more than this batch holds: wake another thread for it
                        self._cond.notify()
                try:
                    connection = self._execute(connection, items)
                finally:
                    if self._aborts and any(_writes(item) for item in items):
                        self._end_writes()
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

    def _end_writes(self) -> None:
        with self._cond:
            if self._writing:
                self._writing = False
                # The writes queued meanwhile wait for this: they are the next batch.
                self._cond.notify()

    def _execute(
        self, connection: Connection | None, items: list[_Item], *, isolated: bool = False
    ) -> Connection | None:
        """Run one batch, retrying once on a fresh connection if a stale one failed early.

        `isolated`: each unit in a savepoint, as a batch the database aborted runs again.
        """
        for attempt in (1, 2):
            committing = False
            guard: Guard | None = None
            try:
                if connection is None:
                    connection = self._engine.connect()
                self._set_autocommit(connection, self._aborts and _one_read(items))
                with contextlib.ExitStack() as stack:
                    guard = self._hold(stack, connection, items)
                    stack.callback(detach, connection.info)
                    with connection.begin():
                        self._apply(connection, items, attach(connection), isolated=isolated)
                        if self._aborts and _transaction_aborted(connection):
                            # COMMIT of an aborted transaction rolls back without an error.
                            raise _Aborted("the database aborted the transaction")
                        committing = True
                self.available = True
                return connection
            except _Aborted as exc:
                if isolated:  # a unit that hid its failed statement: its batch of one fails
                    _fail(items, exc)
                    return connection
                # Rolled back as the transaction's block ended: nothing of the batch took effect.
                logger.info("a batch of %d was aborted; running its items one by one", len(items))
                for item in items:
                    connection = self._execute(connection, [item], isolated=True)
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
                _fail(items, exc)
                return connection
        return connection

    def _hold(
        self, stack: contextlib.ExitStack, connection: Connection, items: list[_Item]
    ) -> Guard | None:
        """Take the lock a batch runs under, then start its deadline; returns the deadline."""
        if self._write_lock is not None:
            stack.enter_context(self._write_lock)
        if self._watchdog is None:
            return None
        dbapi_connection = connection.connection.dbapi_connection
        return stack.enter_context(self._watchdog.guard(dbapi_connection, self._deadline))

    @staticmethod
    def _set_autocommit(connection: Connection, on: bool) -> None:
        # A shared read on PostgreSQL runs alone and needs no transaction: under READ COMMITTED
        # each statement reads its own snapshot either way, and BEGIN and COMMIT would double
        # its round trips. Set on the driver's connection: SQLAlchemy's
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

    def _run_unit(
        self, connection: Connection, item: _Item, held: HeldRows, *, isolated: bool
    ) -> None:
        assert item.unit is not None
        mark = held.mark()
        try:
            if item.savepoint or isolated:
                with connection.begin_nested():
                    item.result = item.unit(connection)
                    # In the savepoint, so that a failed write stays this unit's failure.
                    held.flush(connection)
            else:
                item.result = item.unit(connection)
        except Exception as exc:
            held.undo(mark)
            if connection.invalidated:
                raise
            if self._aborts and not isolated and _transaction_aborted(connection):
                raise _Aborted from exc
            item.error = exc

    def _apply(
        self, connection: Connection, items: list[_Item], held: HeldRows, *, isolated: bool
    ) -> None:
        # Each value with the item that waits for it; a follow-up's has none.
        groups: dict[Group, list[tuple[Any, _Item | None]]] = {}
        for item in items:
            item.result, item.error = None, None
            if item.unit is None:
                assert item.group is not None
                groups.setdefault(item.group, []).append((item.value, item))
                continue
            self._run_unit(connection, item, held, isolated=isolated)
            for follow in item.follows:
                value = _follow_up_value(follow, item.error)
                if value is not _UNMADE:
                    groups.setdefault(follow[0], []).append((value, None))
        rerun = self._aborts and not isolated
        # The rows the units wrote, each once: where a batch does not run again, a failure
        # here fails the batch (it writes records its units already checked to rows it holds).
        if held.pending:
            if rerun:
                _or_abort(connection, held.flush)
            else:
                held.flush(connection)
        # A group alone in its transaction needs no savepoint (two round trips on PostgreSQL):
        # its failure rolls the whole transaction back, and fails only its own members. Nor
        # does one in a batch the database aborts on failure: that batch runs again.
        alone = len(groups) == 1 and all(item.unit is None for item in items)
        for group, members in groups.items():
            values = [value for value, _ in members]
            if alone:
                group(connection, values)
            elif rerun:
                _or_abort(connection, group, values)
            else:
                _group_in_savepoint(connection, group, members)


def _or_abort(connection: Connection, write: Callable[..., None], *args: Any) -> None:
    """Run `write(connection, *args)` in a batch that runs again, item by item, if it fails."""
    try:
        write(connection, *args)
    except Exception as exc:
        if connection.invalidated:
            raise
        raise _Aborted("a write of the batch failed") from exc


def _group_in_savepoint(
    connection: Connection, group: Group, members: list[tuple[Any, _Item | None]]
) -> None:
    """Apply a group whose failure undoes only its own writes and fails only its members."""
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
