"""The two verbs: writes commit (together on SQLite), failures stay with their unit, reads cannot
write, shared reads run once, and the rider commits with its write."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Connection, CursorResult, Table, event, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from analytics_mock.db.engine import Database, create_database_engine
from analytics_mock.db.migrate import upgrade_to_head
from analytics_mock.db.models import UserRow
from analytics_mock.db.runner import READ_CONNECTION, RIDER, FollowUp
from analytics_mock.errors import ObjectNotFound, OutOfDescriptors
from analytics_mock.settings import Settings
from tests.support.db import runner_threads_held, submitted

pytestmark = pytest.mark.anyio
USERS = cast(Table, UserRow.__table__)


def add_user(name: str) -> Any:
    def unit(connection: Connection) -> None:
        connection.execute(insert(USERS).values(name=name, password_hash="x", permissions="Admin"))

    return unit


def names(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(UserRow.name)))


def commits_of(db: Database) -> list[int]:
    """One entry per commit from now on, the PostgreSQL readers' autocommit ones aside."""
    commits: list[int] = []

    def count(conn: Connection) -> None:
        if not conn.info.get(READ_CONNECTION):
            commits.append(1)

    event.listen(db.engine, "commit", count)
    return commits


class UserCount:
    """A read-only unit that counts the users, and how many times it ran."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, connection: Connection) -> int:
        self.runs += 1
        return len(list(connection.execute(select(USERS.c.name))))


def add_users(connection: Connection, values: list[Any]) -> None:
    """A group that adds a user for each value."""
    for value in values:
        add_user(value)(connection)


@contextlib.contextmanager
def riding(follow: Any) -> Iterator[None]:
    """The writes made in the block carry `follow` (one each), as the middleware sets it."""
    token = RIDER.set(lambda: follow)
    try:
        yield
    finally:
        RIDER.reset(token)


def outcome(name: str) -> FollowUp:
    """A follow-up that adds a user named after its unit's outcome."""
    return add_users, lambda error: name if error is None else f"{name}-{type(error).__name__}"


async def test_concurrent_writes_share_one_commit(db: Database) -> None:
    commits = commits_of(db)
    async with runner_threads_held(db):
        rest = [asyncio.ensure_future(db.write(add_user(f"u{i}"))) for i in range(20)]
    await asyncio.gather(*rest)
    assert len(commits) == 2  # one for the blocker, one for the twenty
    assert {f"u{i}" for i in range(20)} <= names(db)


async def test_on_postgresql_reads_run_beside_a_write(db: Database) -> None:
    if db.dialect == "sqlite":
        pytest.skip("SQLite's one writer runs the reads in its batches")
    read_ran = threading.Event()

    def write(connection: Connection) -> None:
        add_user("writer")(connection)
        # Finishes only once the read ran: on another thread, beside this one.
        assert read_ran.wait(timeout=10)

    def read(connection: Connection) -> int:
        count = UserCount()(connection)
        read_ran.set()
        return count

    before = len(names(db))
    results = await asyncio.gather(db.write(write), db.read(read))
    assert results[1] == before  # the write had not committed yet
    assert "writer" in names(db)


async def test_a_failed_write_leaves_none_of_its_writes_and_fails_alone(db: Database) -> None:
    def refuse(_connection: Connection) -> None:
        raise ObjectNotFound("no such object")

    def write_then_fail(connection: Connection) -> None:
        add_user("half")(connection)
        add_user("half")(connection)  # a duplicate key: the first insert must go too

    async with runner_threads_held(db):
        calls = [
            asyncio.ensure_future(db.write(unit))
            for unit in (add_user("before"), refuse, write_then_fail, add_user("after"))
        ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] is None and results[3] is None
    assert isinstance(results[1], ObjectNotFound)
    assert isinstance(results[2], IntegrityError)
    assert {"before", "after"} <= names(db)
    assert "half" not in names(db)


async def test_a_batch_with_a_failed_write_commits_every_other_write_and_entry_once(
    db: Database,
) -> None:
    # PostgreSQL runs such a batch twice (see runner.py): nothing of the first run may stay.
    def refuse(_connection: Connection) -> None:
        raise ObjectNotFound("no such object")

    commits = commits_of(db)
    async with runner_threads_held(db):
        calls = []
        for name, unit in (("a", add_user("a")), ("r", refuse), ("b", add_user("b"))):
            with riding(outcome(f"entry-{name}")):
                calls.append(asyncio.ensure_future(db.write(unit)))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert len(commits) == 2  # the blocker's, and one for the three
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ObjectNotFound)
    # A write or an entry made twice would fail on its duplicate key, and the entries be lost.
    assert {"a", "b", "entry-a", "entry-b", "entry-r-ObjectNotFound"} <= names(db)
    assert db.journal_losses.count == 0


@pytest.mark.parametrize("share", [None, "users"])
async def test_a_read_cannot_write(db: Database, share: str | None) -> None:
    def sneaky(connection: Connection) -> int:
        add_user("sneaky")(connection)
        return 1

    # SQLite: "attempt to write a readonly database"; PostgreSQL: "read-only transaction".
    with pytest.raises(DBAPIError, match=r"(?i)read-?only"):
        await db.read(sneaky, share=share)
    assert "sneaky" not in names(db)
    # The read-only switch ends with the read: writes (and reads) still work.
    await db.write(add_user("writer"))
    assert await db.read(UserCount(), share=share) == len(names(db))


async def test_a_connection_the_runner_gives_back_is_writable_and_not_in_autocommit(
    db: Database,
) -> None:
    await asyncio.gather(*(db.read(UserCount(), share=i) for i in range(16)))
    await asyncio.gather(*(db.write(add_user(f"w{i}")) for i in range(8)))
    db.runner.close()  # the threads give their connections back to the pool
    with contextlib.ExitStack() as stack:
        count = 1 if db.dialect == "sqlite" else 4  # SQLite: one writer at a time
        pooled = [stack.enter_context(db.engine.connect()) for _ in range(count)]
        for i, connection in enumerate(pooled):
            add_user(f"pooled{i}")(connection)
            driver: Any = connection.connection.driver_connection
            if hasattr(driver, "in_transaction"):  # sqlite3
                assert driver.in_transaction
            else:
                assert driver.info.transaction_status != 0  # psycopg: 0 is IDLE


async def test_switching_between_reads_and_writes_keeps_no_memory(db: Database) -> None:
    async def alternate(times: int) -> None:
        for i in range(times):
            await db.read(UserCount(), share=("alternate", i))
            await db.write(UserCount())

    await alternate(100)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await alternate(1000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, grown


async def test_a_cancelled_caller_does_not_stop_the_runner(db: Database) -> None:
    def slow(connection: Connection) -> None:
        connection.execute(text("SELECT 1"))

    task = asyncio.ensure_future(db.write(slow))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await db.write(add_user("later"))
    assert "later" in names(db)


async def test_a_closed_runner_starts_again_on_new_work(db: Database) -> None:
    await db.write(add_user("early"))
    db.runner.close()  # as an app's shutdown does; the app may be started again
    await db.write(add_user("late"))
    assert {"early", "late"} <= names(db)


async def test_shared_reads_run_once_for_callers_that_arrive_before_it_starts(
    db: Database,
) -> None:
    read = UserCount()
    # Every runner thread busy, so the readers queue up behind.
    async with runner_threads_held(db):
        readers = [asyncio.ensure_future(db.read(read, share="users")) for _ in range(10)]
        await submitted()
        readers[0].cancel()  # one caller leaving does not cancel the others
    results = await asyncio.gather(*readers[1:])
    assert read.runs == 1 and len(set(results)) == 1
    # A write acknowledged before the next call is seen by it: a new run, not the old result.
    await db.write(add_user("new"))
    assert await db.read(read, share="users") == results[0] + 1
    assert read.runs == 2


async def test_the_rider_is_made_from_the_outcome_and_committed_with_the_write(
    db: Database,
) -> None:
    commits = commits_of(db)

    def refuse(_connection: Connection) -> None:
        raise ObjectNotFound("no such object")

    with riding(outcome("after-done")):
        await db.write(add_user("done"))
    with riding(outcome("after-refuse")), pytest.raises(ObjectNotFound):
        await db.write(refuse)
    runner_commits = len(commits)
    # A read that does not answer the call carries no rider: it stays for the call's write.
    with riding(outcome("never")):
        await db.read(UserCount())
    assert {"done", "after-done", "after-refuse-ObjectNotFound"} <= names(db)
    assert "never" not in names(db)
    assert runner_commits == 2  # each rode its write's transaction


async def test_a_read_that_answers_the_call_carries_the_rider_where_reads_join_the_writer(
    db: Database,
) -> None:
    commits = commits_of(db)
    async with runner_threads_held(db):
        # Callers that share one read each bring their own entry.
        with riding(outcome("first")):
            first = asyncio.ensure_future(db.read(UserCount(), share="users", answers=True))
        with riding(outcome("second")):
            second = asyncio.ensure_future(db.read(UserCount(), share="users", answers=True))
        await submitted()
    assert await first == await second
    runner_commits = len(commits)
    # The blocking write of `runner_threads_held` commits once.
    if db.dialect == "sqlite":
        # One more transaction holds the read and both entries.
        assert {"first", "second"} <= names(db) and runner_commits == 2
    else:
        # PostgreSQL reads run beside the writer, read-only: the entry stays for a write.
        assert not {"first", "second"} & names(db) and runner_commits == 1


async def test_an_answering_reads_entry_is_counted_lost_when_its_batch_cannot_commit(
    db: Database,
) -> None:
    if db.dialect != "sqlite":
        pytest.skip("only SQLite reads ride in the writer's batch")
    async with runner_threads_held(db):
        with riding(outcome("entry")):
            read = asyncio.ensure_future(db.read(UserCount(), answers=True))
        failed = asyncio.ensure_future(db.write(commit_fails))
        await submitted()
    assert await read == 0  # the answer stands: it read no write of the batch
    with pytest.raises(IntegrityError):
        await failed
    assert "entry" not in names(db) and db.journal_losses.count == 1


async def test_a_failed_rider_is_logged_and_is_not_the_writes_failure(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_connection: Connection, _values: list[Any]) -> None:
        raise RuntimeError("journal table gone")

    def unmakeable(_error: BaseException | None) -> Any:
        raise ValueError("cannot make it")

    with riding((broken, lambda _error: 1)):
        await db.write(add_user("kept"))
    with riding((broken, unmakeable)):
        await db.write(add_user("kept too"))
    assert {"kept", "kept too"} <= names(db)
    assert "journal entries lost" in caplog.text
    assert "a follow-up write could not be made" in caplog.text


async def test_lost_journal_entries_are_counted_and_logged_once_a_minute(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_connection: Connection, _values: list[Any]) -> None:
        raise RuntimeError("disk full")

    for number in range(20):
        with riding((broken, lambda _error: 1)):
            await db.write(add_user(f"u{number}"))
    lines = [r for r in caplog.records if "journal entries lost" in r.getMessage()]
    assert len(lines) == 1
    assert "1 since the last report, 1 in all" in lines[0].getMessage()
    assert db.journal_losses.count == 20
    assert len(names(db)) == 20  # every write stands


async def test_a_connection_that_cannot_be_made_marks_the_database_unavailable(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A journal entry written after such a failure would wait for the database once more,
    # so the call's answer would wait twice its deadline (a stalled PostgreSQL: 5 s + 10 s).
    def no_connection(role: bool) -> Connection:
        raise DBAPIError("connect", None, ConnectionRefusedError("refused"))

    with monkeypatch.context() as patched:
        patched.setattr(db.runner, "_connect", no_connection)
        with pytest.raises(DBAPIError):
            await db.read(UserCount())
        assert db.available is False
    await db.write(add_user("back"))
    assert db.available is True


@pytest.mark.parametrize("first_way", ["batch", "session"])
async def test_the_writers_of_two_processes_never_deadlock(
    db: Database, database_url: str, first_way: str
) -> None:
    # "session": the first writer is a blocking one, as a reset or the command line writes.
    if db.dialect != "postgresql":
        pytest.skip("SQLite takes one writing transaction at a time in any case")
    # Two Databases on one database are two processes of `serve --workers 2`.
    other = Database(create_database_engine(Settings(database_url=database_url)))
    await db.write(add_user("one"))
    await db.write(add_user("two"))
    first_has_one = threading.Event()

    def touch(connection: Connection, name: str) -> None:
        connection.execute(update(USERS).where(USERS.c.name == name).values(failed_logins=1))

    def someone_waits_for(pid: int) -> bool:
        deadline = time.monotonic() + 10
        with db.engine.connect() as watcher:
            while time.monotonic() < deadline:
                blocked = (
                    "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
                )
                if watcher.execute(text(blocked), {"pid": pid}).scalar():
                    return True
                watcher.rollback()
        return False

    def first(connection: Connection) -> None:
        touch(connection, "one")
        first_has_one.set()
        # Where the processes' writers did not take turns, the second one now holds "two" and
        # waits for "one": taking "two" here closes the cycle, and PostgreSQL fails one of them.
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        assert someone_waits_for(pid)
        touch(connection, "two")

    def second(connection: Connection) -> None:
        touch(connection, "two")
        touch(connection, "one")

    def blocking() -> None:
        with db.session(write=True) as session:
            first(session.connection())

    try:
        if first_way == "batch":
            written = asyncio.ensure_future(db.write(first))
        else:
            written = asyncio.ensure_future(asyncio.to_thread(blocking))
        assert await asyncio.to_thread(first_has_one.wait, 10)
        results = await asyncio.gather(written, other.write(second), return_exceptions=True)
    finally:
        other.dispose()
    assert list(results) == [None, None]


async def test_a_unit_that_hides_a_failed_statement_is_not_acknowledged(db: Database) -> None:
    # PostgreSQL aborts the transaction of a failed statement, caught or not, and would roll
    # back a COMMIT of it without an error: such a unit must fail.
    def hiding(connection: Connection) -> str:
        add_user("hidden")(connection)
        with contextlib.suppress(DBAPIError):
            connection.execute(text("SELECT * FROM no_such_table"))
        return "done"

    async with runner_threads_held(db):
        calls = [
            asyncio.ensure_future(db.write(add_user("first"))),
            asyncio.ensure_future(db.write(hiding)),
        ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] is None and "first" in names(db)
    if db.dialect == "sqlite":
        assert results[1] == "done" and "hidden" in names(db)
    else:
        assert isinstance(results[1], Exception) and "hidden" not in names(db)


def commit_fails(connection: Connection) -> None:
    """A write whose statements succeed and whose commit fails (a deferred foreign key)."""
    connection.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS parent_t (id INTEGER PRIMARY KEY)")
    connection.exec_driver_sql(
        "CREATE TEMP TABLE IF NOT EXISTS child_t"
        " (pid INTEGER REFERENCES parent_t (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    connection.exec_driver_sql("INSERT INTO child_t VALUES (1)")


async def test_a_read_answers_when_only_the_commit_of_its_batch_fails(db: Database) -> None:
    # As a full disk does to a batch that holds journal entries: the read saw no write of it.
    await db.write(add_user("a"))
    async with runner_threads_held(db):
        read = asyncio.ensure_future(db.read(UserCount()))
        failed = asyncio.ensure_future(db.write(commit_fails))
        await submitted()
    assert await read == 1
    with pytest.raises(IntegrityError):
        await failed
    assert names(db) == {"a"}


def wal_database(path: Path, limit: int) -> Database:
    """A migrated SQLite database at `path` whose WAL keeps `limit` bytes after a checkpoint."""
    settings = Settings(database_url=f"sqlite:///{path}", sqlite_wal_size_limit=limit)
    engine = create_database_engine(settings)
    upgrade_to_head(engine)
    return Database(engine)


async def wal_burst(db: Database) -> None:
    """Some 5 MB through the WAL, past an auto-checkpoint: 300 users, each rewritten large."""
    for number in range(300):
        await db.write(add_user(f"user-{number}-" + "x" * 200))

        def rewrite(c: Connection, n: int = number) -> CursorResult[Any]:
            return c.execute(
                USERS.update()
                .where(USERS.c.name.like(f"user-{n}-%"))
                .values(password_hash="h" * 16000)
            )

        await db.write(rewrite)


def test_the_sqlite_wal_shrinks_to_its_limit_after_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    db = wal_database(path, 64 * 1024)
    wal = Path(f"{path}-wal")
    try:
        asyncio.run(wal_burst(db))
        with contextlib.closing(sqlite3.connect(path)) as outside:  # whatever auto-checkpoints did
            outside.execute("PRAGMA wal_checkpoint(PASSIVE)")
        asyncio.run(db_write_one(db))
        # Without the limit the file stays at its largest, some 4 MB (1,000 pages) here.
        assert wal.stat().st_size <= 64 * 1024 + 3 * 4096
    finally:
        db.dispose()


async def db_write_one(db: Database) -> None:
    await db.write(add_user("after-the-checkpoint"))


# Another process's reader: read transactions of 50 ms, one after the other, the first
# starting `argv[2]` seconds late; "reading" once the first holds its snapshot.
_READER = """
import sqlite3, sys, time
reader = sqlite3.connect(sys.argv[1], isolation_level=None)
time.sleep(float(sys.argv[2]))
first = True
while True:
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM users").fetchall()
    if first:
        print("reading", flush=True)
        first = False
    time.sleep(0.05)
    reader.execute("COMMIT")
"""


def test_readers_of_other_processes_cannot_keep_the_wal_past_its_limit(tmp_path: Path) -> None:
    # SQLite only: PostgreSQL's write-ahead log is the database server's.
    path = tmp_path / "wal.db"
    limit = 256 * 1024
    db = wal_database(path, limit)
    wal = Path(f"{path}-wal")
    # Two readers whose transactions overlap: one of them always holds a snapshot.
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", _READER, str(path), str(delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for delay in (0.0, 0.025)
    ]
    try:
        for reader in readers:
            assert reader.stdout is not None and reader.stdout.readline() == "reading\n"

        async def settle() -> int:
            # Writes go on while the readers still overlap: within a few checkpoint attempts
            # the WAL is back under its limit.
            deadline = time.monotonic() + 20
            number = 0
            while (size := os.stat(wal).st_size) > limit and time.monotonic() < deadline:
                await asyncio.to_thread(time.sleep, 0.001)  # not as fast as a disk takes them
                number += 1
                await db.write(add_user(f"after-{number}"))
            return size

        asyncio.run(wal_burst(db))  # while the readers read
        assert all(reader.poll() is None for reader in readers)
        assert asyncio.run(settle()) <= limit
    finally:
        for reader in readers:
            reader.kill()
            reader.wait()
        db.dispose()


def test_a_database_call_without_a_descriptor_left_is_a_503_to_retry(tmp_path: Path) -> None:
    # SQLite, whose connection opens the file: PostgreSQL's opens a socket, checked alike.
    path = tmp_path / "fd.db"
    engine = create_database_engine(Settings(database_url=f"sqlite:///{path}"))
    upgrade_to_head(engine)
    engine.dispose()  # the runner's first write must open the file itself
    db = Database(engine)

    async def starved() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        held: list[int] = []
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
        try:
            with contextlib.suppress(OSError):
                while True:
                    held.append(os.open(os.devnull, os.O_RDONLY))
            with pytest.raises(OutOfDescriptors) as raised:
                await db.write(add_user("starved"))
        finally:
            for fd in held:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert raised.value.status == 503 and raised.value.headers == {"Retry-After": "1"}
        await db.write(add_user("served"))

    try:
        asyncio.run(starved())
        assert "served" in names(db) and "starved" not in names(db)
    finally:
        db.dispose()
