"""Concurrent PUTs, GETs and HSSO token uses against real server processes.

About 200 calls from 8 threads: on SQLite against one process; on PostgreSQL (when configured)
against two processes over the same database, each call going to either. Checked: no 5xx and
no transport error; each PUT answers its own values (no torn write); the stored object is the
value of a PUT that no acknowledged PUT superseded (last writer wins) and is consistent; and the
request journal holds exactly the calls made, by method, path and status.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH
from tests.support.reliability import BACKEND_PARAMS, StartServer
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.live

THREADS = 8
CALLS_PER_THREAD = 25
DECODED_OBJECT_PATH = "/Analytics/v1/objects/EmailServerSettings/mailServerSetting#0"


@dataclass
class Call:
    method: str
    path: str
    status: int
    sent: float
    acked: float
    port: int | None = None  # the value a PUT wrote


def hostname_for(port: int) -> str:
    return f"h{port}.example.com"


def worker(index: int, servers: list[ServerProcess], token: str, calls: list[Call]) -> None:
    clients = [server.client(timeout=30.0) for server in servers]
    try:
        for step in range(CALLS_PER_THREAD):
            http = clients[(index + step) % len(clients)]
            kind = step % 3
            sent = time.monotonic()
            port = None
            if kind == 0:
                port = 10_000 + index * 100 + step
                body = {"portNumber": port, "hostname": hostname_for(port)}
                response = http.put(OBJECT_PATH, json=body, headers=ADMIN)
                method, path = "PUT", DECODED_OBJECT_PATH
                if response.status_code == 200:
                    answered = response.json()
                    assert (answered["portNumber"], answered["hostname"]) == (
                        port,
                        hostname_for(port),
                    ), f"PUT {port} answered {answered}"
            elif kind == 1:
                response = http.get(SETTINGS_PATH, headers=ADMIN)
                method, path = "GET", SETTINGS_PATH
            else:
                response = http.get(SETTINGS_PATH, headers={"Authorization": f"HSSO {token}"})
                method, path = "GET", SETTINGS_PATH
                if response.status_code == 200:
                    assert response.headers["www-authenticate"] == f"HSSO {token}"
            calls.append(Call(method, path, response.status_code, sent, time.monotonic(), port))
    finally:
        for client in clients:
            client.close()


def run_load(servers: list[ServerProcess]) -> None:
    with servers[0].client() as http:
        issued = http.get(SETTINGS_PATH, headers=ADMIN)
        assert issued.status_code == 200
        token = issued.headers["www-authenticate"].removeprefix("HSSO ")
        assert http.delete("/_mock/requests").status_code == 204

    calls: list[Call] = []
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            worker(index, servers, token, calls)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120.0)
    assert not any(thread.is_alive() for thread in threads), "a client thread hung"
    assert errors == [], errors
    assert len(calls) == THREADS * CALLS_PER_THREAD

    statuses = Counter(call.status for call in calls)
    assert statuses == {200: len(calls)}, statuses

    # The journal holds every call made, and nothing else.
    with servers[-1].client() as http:
        journal = http.get("/_mock/requests", params={"limit": 10_000})
        assert journal.status_code == 200
        journalled = Counter(
            (entry["method"], entry["path"], entry["status"])
            for entry in journal.json()["requests"]
        )
        made = Counter((call.method, call.path, call.status) for call in calls)
        assert journalled == made

        # Last writer wins: the stored value is a PUT that no acknowledged PUT superseded.
        listed = http.get(SETTINGS_PATH, headers=ADMIN)
    [stored] = listed.json()["data"]
    puts = [call for call in calls if call.port is not None]
    latest = {x.port for x in puts if not any(y.sent > x.acked for y in puts)}
    assert stored["portNumber"] in latest, (stored, sorted(p for p in latest if p is not None))
    assert stored["hostname"] == hostname_for(stored["portNumber"])


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_concurrent_calls(
    backend: str,
    start_server: StartServer,
    make_database_url: Callable[[str], str],
) -> None:
    url = make_database_url(backend)
    env = {"ANALYTICS_MOCK_SECRET_KEY": "concurrency-secret-key"}
    count = 1 if backend == "sqlite" else 2
    servers = [start_server(url, env=env) for _ in range(count)]
    for server in servers:
        server.wait_ready()
    run_load(servers)
    for server in servers:
        assert server.stop() == 0, server.output()
