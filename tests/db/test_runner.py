"""The unit runner: batches share a transaction, failures stay with their unit, commits are real."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import tracemalloc
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from analytics_mock.db.engine import Database
from analytics_mock.db.models import UserRow
from analytics_mock.errors import ObjectNotFound
from tests.db.support import runner_threads, runner_threads_held

pytestmark = pytest.mark.anyio
USERS = UserRow.__table__


def add_user(name: str) -> Any:
    def unit(connection: Connection) -> None:
        connection.execute(insert(USERS).values(name=name, password_hash="x", permissions="Admin"))

    return unit


def names(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(UserRow.name)))


class UserCount:
    """A read-only unit that counts the users, and how many times it ran."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, connection: Connection) -> int:
        self.runs += 1
        return len(list(connection.execute(select(USERS.c.name))))


async def test_concurrent_units_share_one_commit(db: Database) -> None:
    # Every runner thread started (a thread that starts takes what is queued at once).
    await asyncio.gather(*(db.run(add_user(f"warm{i}")) for i in range(8)))
    await asyncio.sleep(0.1)
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))
    # Queued while a batch of units runs, the next 20 go into one batch.
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    def block(_connection: Connection) -> None:
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(timeout=5)

    first = asyncio.ensure_future(db.run(block))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(db.run(add_user(f"u{i}"))) for i in range(20)]
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, *rest)
    runner_commits = len(commits)
    assert {f"u{i}" for i in range(20)} <= names(db)
    assert runner_commits == 2  # one for the blocker, one for the twenty


async def test_a_failed_unit_fails_alone(db: Database) -> None:
    def refuse(_connection: Connection) -> None:
        raise ObjectNotFound("no such object")

    def write_then_fail(connection: Connection) -> None:
        add_user("half")(connection)
        add_user("half")(connection)  # a duplicate key: the first insert must go too

    results = await asyncio.gather(
        db.run(add_user("before")),
        db.run(refuse),
        db.run(write_then_fail, savepoint=True),
        db.run(add_user("after")),
        return_exceptions=True,
    )
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], ObjectNotFound)
    assert isinstance(results[2], IntegrityError)
    assert {"before", "after"} <= names(db)
    assert "half" not in names(db)


async def test_grouped_values_arrive_together(db: Database) -> None:
    seen: list[list[Any]] = []

    def group(connection: Connection, values: list[Any]) -> None:
        seen.append(values)
        for value in values:
            add_user(value)(connection)

    await asyncio.gather(*(db.run_grouped(group, f"g{i}") for i in range(5)))
    assert sorted(v for batch in seen for v in batch) == [f"g{i}" for i in range(5)]
    assert {f"g{i}" for i in range(5)} <= names(db)


async def test_a_failed_group_does_not_undo_the_units(db: Database) -> None:
    def broken(_connection: Connection, _values: list[Any]) -> None:
        raise RuntimeError("journal table gone")

    results = await asyncio.gather(
        db.run(add_user("kept")), db.run_grouped(broken, 1), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], RuntimeError)
    assert "kept" in names(db)


async def test_a_group_alone_that_fails_leaves_none_of_its_writes(db: Database) -> None:
    def half_then_fail(connection: Connection, values: list[Any]) -> None:
        add_user(values[0])(connection)
        raise RuntimeError("second write refused")

    with pytest.raises(RuntimeError, match="second write refused"):
        await db.run_grouped(half_then_fail, "half")
    assert "half" not in names(db)
    # The runner's connection is clean for the next batch.
    await db.run(add_user("after"))
    assert "after" in names(db)


def in_transaction(connection: Connection) -> bool:
    """Whether the driver connection is inside a transaction right after a statement."""
    connection.execute(text("SELECT 1"))
    driver: Any = connection.connection.driver_connection
    if hasattr(driver, "in_transaction"):  # sqlite3
        return bool(driver.in_transaction)
    return bool(driver.info.transaction_status != 0)  # psycopg: 0 is IDLE


async def test_shared_reads_run_without_a_transaction_only_where_units_run_alone(
    db: Database,
) -> None:
    # On PostgreSQL a shared read is a batch of its own: BEGIN and COMMIT would only double
    # its round trips. On SQLite it shares its batch's transaction with the writes.
    reads = [await db.run_shared(("tx", i), in_transaction) for i in range(3)]
    assert reads == [db.dialect == "sqlite"] * 3
    # The units after it are transactions again, on every runner thread.
    units = await asyncio.gather(*(db.run(in_transaction) for _ in range(8)))
    assert units == [True] * 8
    assert await db.run_shared(("tx", "again"), in_transaction) == (db.dialect == "sqlite")


async def test_switching_between_reads_and_units_keeps_no_memory(db: Database) -> None:
    async def alternate(times: int) -> None:
        for i in range(times):
            await db.run_shared(("alternate", i), in_transaction)
            await db.run(in_transaction)

    await alternate(100)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await alternate(2000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # A reset callback kept per switch (what SQLAlchemy's isolation_level option does on a
    # connection that is never given back) would be some 800 kB by now.
    assert grown < 100_000, grown


async def test_a_connection_the_runner_gives_back_is_not_left_in_autocommit(
    db: Database,
) -> None:
    # Every runner thread ends on a shared read, its connection in autocommit.
    await asyncio.gather(*(db.run_shared(("last", i), in_transaction) for i in range(16)))
    db.runner.close()  # the threads give their connections back to the pool
    with contextlib.ExitStack() as stack:
        pooled = [stack.enter_context(db.engine.connect()) for _ in range(runner_threads(db))]
        assert [in_transaction(connection) for connection in pooled] == [True] * len(pooled)


async def test_a_cancelled_caller_does_not_stop_the_runner(db: Database) -> None:
    def slow(connection: Connection) -> None:
        connection.execute(text("SELECT 1"))

    task = asyncio.ensure_future(db.run(slow))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await db.run(add_user("later"))
    assert "later" in names(db)


async def test_a_closed_runner_starts_again_on_new_work(db: Database) -> None:
    await db.run(add_user("early"))
    db.runner.close()  # as an app's shutdown does; the app may be started again
    await db.run(add_user("late"))
    assert {"early", "late"} <= names(db)


async def test_shared_reads_run_once_for_callers_that_arrive_before_it_starts(
    db: Database,
) -> None:
    read = UserCount()
    # Every runner thread busy (PostgreSQL has several), so the readers queue up behind.
    async with runner_threads_held(db):
        readers = [asyncio.ensure_future(db.run_shared("users", read)) for _ in range(10)]
        readers[0].cancel()  # one caller leaving does not cancel the others
    results = await asyncio.gather(*readers[1:])
    assert read.runs == 1 and len(set(results)) == 1
    # A write acknowledged before the next call is seen by it: a new run, not the old result.
    await db.run(add_user("new"))
    assert await db.run_shared("users", read) == results[0] + 1
    assert read.runs == 2


async def test_each_caller_of_a_shared_run_has_its_follow_up_written_before_it_resumes(
    db: Database,
) -> None:
    read = UserCount()

    def group(connection: Connection, values: list[Any]) -> None:
        for value in values:
            add_user(value)(connection)

    def follow(name: str) -> Any:
        return group, lambda error: name if error is None else f"{name}-failed"

    async with runner_threads_held(db):
        before = len(names(db))
        readers = [
            asyncio.ensure_future(db.run_shared("users", read, follow=follow(f"reader{i}")))
            for i in range(5)
        ]
    results = await asyncio.gather(*readers)
    # One read for all five; each resumes only once its own entry is committed.
    assert read.runs == 1 and set(results) == {before}
    assert {f"reader{i}" for i in range(5)} <= names(db)

    def refuse(_connection: Connection) -> int:
        raise ObjectNotFound("no such object")

    with pytest.raises(ObjectNotFound):
        await db.run_shared("refused", refuse, follow=follow("late"))
    assert "late-failed" in names(db)


async def test_on_postgresql_reads_and_groups_run_beside_units_and_units_take_turns(
    db: Database,
) -> None:
    if db.dialect == "sqlite":
        pytest.skip("SQLite has one runner thread")
    await asyncio.gather(*(db.run(add_user(f"warm{i}")) for i in range(8)))
    await asyncio.sleep(0.1)  # every runner thread started and now idle, waiting to be woken
    gate = threading.Event()
    order: list[str] = []

    def first(_connection: Connection) -> None:
        gate.wait(timeout=5)
        order.append("first")

    def second(_connection: Connection) -> None:
        order.append("second")

    running = asyncio.ensure_future(db.run(first))
    await asyncio.sleep(0.1)
    # A read and a grouped write lock no rows: they run on other threads while the first unit
    # still runs.
    grouped: list[Any] = []
    await asyncio.wait_for(db.run_grouped(lambda _c, values: grouped.extend(values), "g"), 4)
    assert grouped == ["g"]
    waiting = asyncio.ensure_future(db.run(second))
    assert await asyncio.wait_for(db.run_shared("beside", UserCount()), 4) >= 8
    await asyncio.sleep(0.1)
    # A second batch of units waits for the first to end, so the two never hold row locks
    # that each waits on.
    assert order == [] and not waiting.done()
    gate.set()
    await asyncio.gather(running, waiting)
    assert order == ["first", "second"]


def add_users(_connection: Connection, values: list[Any]) -> None:
    """A group that adds a user for each value."""
    for value in values:
        add_user(value)(_connection)


def outcome(name: str) -> Any:
    """A follow-up that adds a user named after its unit's outcome."""
    return add_users, lambda error: name if error is None else f"{name}-{type(error).__name__}"


async def test_a_failed_statement_spoils_no_other_unit_or_group(db: Database) -> None:
    # On PostgreSQL a failed statement aborts its whole transaction (the batch runs again, one
    # item at a time); on SQLite it fails alone.
    def broken(connection: Connection) -> None:
        connection.execute(text("SELECT * FROM no_such_table"))

    written: list[Any] = []

    def group(_connection: Connection, values: list[Any]) -> None:
        written.extend(values)

    # Every runner thread held, so the ones below are queued together, in this order.
    async with runner_threads_held(db):
        calls = [
            asyncio.ensure_future(db.run(add_user("before"), follow=outcome("before-entry"))),
            asyncio.ensure_future(db.run(broken, follow=outcome("broken-entry"))),
            asyncio.ensure_future(db.run_grouped(group, "entry")),
            asyncio.ensure_future(db.run(add_user("fine"))),
        ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert "no_such_table" in str(results[1])
    assert results[0] is None and results[2] is None and results[3] is None
    assert written == ["entry"]
    assert {"before", "before-entry", "fine"} <= names(db)
    # SQLite calls it an OperationalError, PostgreSQL a ProgrammingError.
    assert any(name.startswith("broken-entry-") and "Error" in name for name in names(db))


async def test_a_unit_that_hides_a_failed_statement_is_not_acknowledged(db: Database) -> None:
    # PostgreSQL aborts the transaction of a failed statement, caught or not, and would roll
    # back a COMMIT of it without an error: such a unit must fail, and fail alone.
    def hiding(connection: Connection) -> str:
        add_user("hidden")(connection)
        with contextlib.suppress(DBAPIError):
            connection.execute(text("SELECT * FROM no_such_table"))
        return "done"

    async with runner_threads_held(db):
        # Last in its batch: no later statement of the batch fails on the aborted transaction.
        calls = [
            asyncio.ensure_future(db.run(add_user("first"))),
            asyncio.ensure_future(db.run(hiding)),
        ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] is None and "first" in names(db)
    if db.dialect == "sqlite":
        assert results[1] == "done" and "hidden" in names(db)
    else:
        assert isinstance(results[1], Exception) and "hidden" not in names(db)


async def test_a_follow_up_is_made_from_the_units_outcome_and_committed_with_it(
    db: Database,
) -> None:
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))
    outcomes: list[BaseException | None] = []

    def group(connection: Connection, values: list[Any]) -> None:
        for value in values:
            add_user(value)(connection)

    def make(name: str) -> Any:
        def value(error: BaseException | None) -> str:
            outcomes.append(error)
            return name if error is None else f"{name}-{type(error).__name__}"

        return value

    def refuse(_connection: Connection) -> None:
        raise ObjectNotFound("no such object")

    await db.run(add_user("done"), follow=(group, make("after-done")))
    with pytest.raises(ObjectNotFound):
        await db.run(refuse, follow=(group, make("after-refuse")))
    assert len(commits) == 2  # each follow-up rode its unit's transaction
    assert {"done", "after-done", "after-refuse-ObjectNotFound"} <= names(db)
    assert outcomes[0] is None and isinstance(outcomes[1], ObjectNotFound)


async def test_a_failed_follow_up_is_not_the_units_failure(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_connection: Connection, _values: list[Any]) -> None:
        raise RuntimeError("journal table gone")

    def unmakeable(_error: BaseException | None) -> Any:
        raise ValueError("cannot make it")

    await db.run(add_user("kept"), follow=(broken, lambda _error: 1))
    await db.run(add_user("kept too"), follow=(broken, unmakeable))
    assert {"kept", "kept too"} <= names(db)
    assert "a follow-up write was lost" in caplog.text
    assert "a follow-up write could not be made" in caplog.text
