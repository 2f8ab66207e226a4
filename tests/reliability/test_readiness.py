"""`/readyz` reports what a client would meet, and writes fail loudly rather than be lost:
a full disk, an outside write lock, a SQLite file deleted or replaced under the server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from analytics_mock.db import engine as engine_module
from analytics_mock.db.prepared import run_sql
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH, basic
from tests.support.servers import ServerProcess, running_server, workers_of

pytestmark = pytest.mark.anyio
PUT_HEADERS = {**ADMIN, "Content-Type": "application/json", "Accept": "application/json"}
GET_HEADERS = {**ADMIN, "Accept": "application/json"}


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs of the test's own: needs root (CI runs as root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs a tmpfs of its own, which only root may mount")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of `disk`; the file that took them."""
    filler = disk / "filler"
    out = filler.open("wb")
    try:
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    except OSError:
        pass
    # What the last flush could not write is dropped: closing would try it once more.
    with contextlib.suppress(OSError):
        out.close()
    return filler


async def test_a_full_disk_fails_writes_and_readiness_but_not_reads(
    small_disk: Path, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    async with make_client(database_url=sqlite_url(small_disk / "store.db")) as client:
        assert (await client.get("/readyz")).status_code == 200
        state = (await client.get("/_mock/state")).json()
        state["users"].append({"name": "late", "password": "late-pw", "permissions": ["Admin"]})
        assert (await client.put("/_mock/state", json=state)).status_code == 200
        # Signed in before (an import ends every session): the session a first call makes is a
        # write, which would fail.
        assert (await client.get(SETTINGS_PATH, headers=GET_HEADERS)).status_code == 200
        filler = fill(small_disk)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"status": "unavailable"}
        for _ in range(3):  # each read's journal entry is lost, never the read
            read = await client.get(SETTINGS_PATH, headers=GET_HEADERS)
            assert read.status_code == 200, read.text
        put = await client.put(OBJECT_PATH, headers=PUT_HEADERS, json={"portNumber": 2525})
        late = await client.get(SETTINGS_PATH, headers={**basic("late", "late-pw")})
        for refused in (put, late):  # the late user's first call must store its session
            assert refused.status_code == 503, refused.text
            assert refused.json()["messageID"] == "KNAQ25302-E"
        filler.unlink()
        assert (await client.get("/readyz")).status_code == 200
        put = await client.put(OBJECT_PATH, headers=PUT_HEADERS, json={"portNumber": 2526})
        assert put.status_code == 200


@contextlib.contextmanager
def outside_write_lock(database_url: str) -> Iterator[None]:
    """Another process's transaction that holds the lock every write of the server needs."""
    if database_url.startswith("sqlite"):
        outside = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
        outside.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            outside.execute("ROLLBACK")
            outside.close()
        return
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection, connection.begin():
            connection.exec_driver_sql("LOCK TABLE control IN EXCLUSIVE MODE")  # reads pass
            yield
    finally:
        engine.dispose()


async def test_an_outside_write_lock_makes_readiness_fail(
    database_url: str, make_client: Callable[..., httpx.AsyncClient]
) -> None:
    async with make_client(sqlite_busy_timeout_ms=200, database_timeout=1.0) as client:
        assert (await client.get("/readyz")).status_code == 200
        with outside_write_lock(database_url):
            assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/readyz")).status_code == 200


def take_away(path: Path, how: str) -> None:
    """Replace the SQLite file at `path` by a copy (atomically, as a restore from a backup
    does) or delete it, as `how` says."""
    if how == "replaced":
        copy = path.with_name("copy.db")
        with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        os.replace(copy, path)
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["replaced", "deleted"])
async def test_a_database_file_replaced_under_the_server_takes_no_write(
    tmp_path: Path,
    make_client: Callable[..., httpx.AsyncClient],
    how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "store.db"
    async with make_client(database_url=sqlite_url(path)) as client:
        assert (await client.get("/readyz")).status_code == 200
        take_away(path, how)
        assert (await client.get("/readyz")).status_code == 503
        put = await client.put(OBJECT_PATH, headers=PUT_HEADERS, json={"portNumber": 2527})
        assert put.status_code >= 500 and put.json()["application"] == "Analytics"
        assert "2527" not in put.text
        # Every call fails the same way meanwhile: the log says so once, with the count.
        for _ in range(20):
            got = await client.get(SETTINGS_PATH, headers=GET_HEADERS)
            assert got.status_code == 500 and got.json()["application"] == "Analytics"
        lines = [r for r in caplog.records if "cannot read the test controls" in r.getMessage()]
        assert len(lines) == 1 and "1 since the last report" in lines[0].getMessage()


async def test_a_call_under_an_outside_lock_waits_out_one_busy_timeout(
    tmp_path: Path,
    make_client: Callable[..., httpx.AsyncClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "store.db"
    async with make_client(database_url=sqlite_url(path), sqlite_busy_timeout_ms=200) as client:
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        db = transport.app.state.runtime.db  # type: ignore[attr-defined]
        assert (await client.get(SETTINGS_PATH, headers=GET_HEADERS)).status_code == 200
        waits: list[str] = []

        def begun(connection: Any, sql: str) -> None:
            if sql.startswith("BEGIN IMMEDIATE"):
                waits.append(sql)
            run_sql(connection, sql)

        # The transaction's BEGIN goes to the driver, past SQLAlchemy's events.
        monkeypatch.setattr(engine_module, "run_sql", begun)
        lost = db.journal_losses.count
        with outside_write_lock(sqlite_url(path)):
            failed = await client.get(SETTINGS_PATH, headers=GET_HEADERS)
        assert failed.status_code == 500 and failed.json()["application"] == "Analytics"
        # One wait for the lock (the read's); the journal entry is dropped and counted, not
        # written after a second wait.
        assert len(waits) == 1
        assert db.journal_losses.count == lost + 1
        assert (await client.get(SETTINGS_PATH, headers=GET_HEADERS)).status_code == 200


def refused_everywhere(server: ServerProcess, port: int) -> None:
    """Fresh connections, so that the kernel hands them to either worker: none serves."""
    for _ in range(10):
        assert httpx.get(server.url + "/readyz").status_code == 503
        got = httpx.get(server.url + SETTINGS_PATH, headers=GET_HEADERS)
        assert got.status_code >= 500 and got.json()["application"] == "Analytics"
        put = httpx.put(server.url + OBJECT_PATH, headers=PUT_HEADERS, json={"portNumber": port})
        assert put.status_code >= 500 and put.json()["application"] == "Analytics"


@pytest.mark.live
@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_every_worker_refuses_a_replaced_file_a_worker_started_after_it_too(
    tmp_path: Path, how: str
) -> None:
    # SQLite only: a PostgreSQL database has no file to replace under the server.
    path = tmp_path / "store.db"
    with running_server(tmp_path, "--workers", "2", "--database-url", sqlite_url(path)) as server:
        workers = workers_of(server)
        put = httpx.put(server.url + OBJECT_PATH, headers=PUT_HEADERS, json={"portNumber": 2525})
        assert put.status_code == 200
        take_away(path, how)
        refused_everywhere(server, 2527)
        # Each worker in turn is replaced by one that starts after the file was: at the end
        # both workers opened the path only after the replacement.
        for victim in sorted(workers):
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while victim in (now := workers_of(server)):
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.1)
            refused_everywhere(server, 2528)
        assert len(now & workers) == 0
    if how == "replaced":  # the file at the path took no write of the server's
        with contextlib.closing(sqlite3.connect(path)) as replaced:
            ports = {port for (port,) in replaced.execute("SELECT port_number FROM email_settings")}
            bodies = [body or "" for (body,) in replaced.execute("SELECT body FROM journal")]
        # Not a search of the whole dump: a digest or a timestamp may hold the same digits.
        assert ports == {2525}
        assert not [body for body in bodies if "2527" in body or "2528" in body]
    else:
        assert not path.exists()
