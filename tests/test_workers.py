"""`serve --workers N`: several processes on one port behave as one server.

Each test starts the real command on 127.0.0.1 with two workers over SQLite, and over
PostgreSQL too when ANALYTICS_MOCK_TEST_POSTGRES_URL is set (the `database_url` fixture).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH
from tests.support.servers import (
    pid_alive,
    running_server_at_default_host,
    serve_refusal,
    strict_context,
    workers_of,
)

pytestmark = pytest.mark.live

THREADS = 8
PUTS_PER_THREAD = 15
# Enough fresh connections that the kernel hands some to each worker.
MAX_TRIES = 200


def issued_token(client: httpx.Client) -> str:
    """The HSSO token a Basic request gets back from the worker behind `client`'s connection."""
    response = client.get(SETTINGS_PATH, headers=ADMIN)
    assert response.status_code == 200, response.text
    scheme, _, token = response.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "HSSO"
    return token


def clients_on_two_workers(base: str) -> tuple[httpx.Client, str, httpx.Client, str]:
    """Two kept-alive connections that reach different workers, with each one's token.

    A worker hands one Basic client the same token every time, so a different token means a
    different worker; a kept-alive connection stays with the worker that accepted it.
    """
    first = httpx.Client(base_url=base, limits=httpx.Limits(max_connections=1), timeout=10)
    first_token = issued_token(first)
    for _ in range(MAX_TRIES):
        other = httpx.Client(base_url=base, limits=httpx.Limits(max_connections=1), timeout=10)
        token = issued_token(other)
        if token != first_token:
            return first, first_token, other, token
        other.close()
    first.close()
    pytest.fail(f"{MAX_TRIES} connections all reached one worker")


def test_concurrent_writes_through_two_workers_are_all_kept(
    tmp_path: Path, database_url: str
) -> None:
    with running_server_at_default_host(
        tmp_path, "--workers", "2", "--database-url", database_url, "--secret-key", "k"
    ) as server:
        workers_of(server)

        def put_many(thread: int) -> list[tuple[int, int, int | None]]:
            results = []
            for i in range(PUTS_PER_THREAD):
                port = 1000 + thread * PUTS_PER_THREAD + i
                # A fresh connection each time, so both workers take a share of the writes.
                response = httpx.put(
                    server.url + OBJECT_PATH, json={"portNumber": port}, headers=ADMIN, timeout=30
                )
                stored = response.json().get("portNumber") if response.status_code == 200 else None
                results.append((port, response.status_code, stored))
            return results

        with ThreadPoolExecutor(THREADS) as pool:
            results = [r for rs in pool.map(put_many, range(THREADS)) for r in rs]
        assert [r for r in results if r[1] != 200] == []
        # Each write answered with what it wrote, not with another writer's value.
        assert all(port == stored for port, _, stored in results)
        acknowledged = {port for port, _, _ in results}
        assert len(acknowledged) == THREADS * PUTS_PER_THREAD

        finals = set()
        for _ in range(10):
            listing = httpx.get(server.url + SETTINGS_PATH, headers=ADMIN, timeout=10)
            assert listing.status_code == 200
            assert listing.json()["count"] == 1
            finals.add(listing.json()["data"][0]["portNumber"])
        assert len(finals) == 1
        assert finals <= acknowledged
        assert server.stop() == 0
    if database_url.startswith("sqlite"):
        database = make_url(database_url).database
        assert database is not None
        with sqlite3.connect(database) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_token_issued_by_one_worker_works_on_the_other(tmp_path: Path, database_url: str) -> None:
    with running_server_at_default_host(
        tmp_path, "--workers", "2", "--database-url", database_url
    ) as server:
        first, first_token, other, other_token = clients_on_two_workers(server.url)
        try:
            for client, token in ((other, first_token), (first, other_token)):
                response = client.get(SETTINGS_PATH, headers={"Authorization": f"HSSO {token}"})
                assert response.status_code == 200, response.text
        finally:
            first.close()
            other.close()
        # And over fresh connections, wherever the kernel sends them.
        for token in (first_token, other_token):
            for _ in range(20):
                response = httpx.get(
                    server.url + SETTINGS_PATH,
                    headers={"Authorization": f"HSSO {token}"},
                    timeout=10,
                )
                assert response.status_code == 200, response.text


def test_workers_serve_https_too(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with running_server_at_default_host(
        tmp_path, "--workers", "2", "--database-url", f"sqlite:///{db}", https=True
    ) as server:
        workers_of(server)
        context = strict_context(tmp_path / "m.db.tls.crt")
        for _ in range(10):
            with httpx.Client(verify=context) as https:
                response = https.get(server.https_url + SETTINGS_PATH, headers=ADMIN)
            assert response.status_code == 200
        assert server.output().count("SHA-256 fingerprint") == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_parent_stops_every_worker(tmp_path: Path, signum: int) -> None:
    db = tmp_path / "m.db"
    with running_server_at_default_host(
        tmp_path, "--workers", "2", "--database-url", f"sqlite:///{db}"
    ) as s:
        workers = workers_of(s)
        assert s.stop(signum) == 0
        assert not any(pid_alive(pid) for pid in workers)
        with pytest.raises(ConnectionRefusedError), socket.socket() as sock:
            sock.connect(("127.0.0.1", s.port))
        log = s.output()
    assert "Traceback" not in log
    assert log.count("Finished server process") == 2


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with running_server_at_default_host(
        tmp_path, "--workers", "2", "--database-url", f"sqlite:///{db}"
    ) as s:
        workers = workers_of(s)
        # A worker that dies at once is taken for one that cannot start: wait past that.
        time.sleep(5.5)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = workers_of(s)
            if victim not in now:
                break
            time.sleep(0.1)
        assert len(now) == 2
        assert victim not in now
        for _ in range(10):
            assert httpx.get(s.url + SETTINGS_PATH, headers=ADMIN).status_code == 200
        assert "starting another" in s.output()
        assert s.stop() == 0


def test_workers_refuse_a_bad_database_in_one_line(tmp_path: Path) -> None:
    line = serve_refusal(
        tmp_path, "--workers", "2", "--database-url", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"
    )
    assert "cannot open the database" in line
    assert "hunter2" not in line


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_workers_refuse_sqlite_in_memory(tmp_path: Path, url: str) -> None:
    # Each process would have a database of its own: not one server.
    line = serve_refusal(tmp_path, "--workers", "2", "--database-url", url)
    assert "--workers needs a database file or PostgreSQL" in line
