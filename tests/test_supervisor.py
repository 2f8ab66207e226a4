"""The supervisor of `serve --workers N`: a crash-loop budget, workers that follow it, a clean stop.

Each test starts the real command on 127.0.0.1 with two workers over a SQLite file.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.helpers import ADMIN, SETTINGS_PATH
from tests.support.servers import (
    ERROR_PREFIX,
    ServerProcess,
    child_pids,
    pid_alive,
    start_server_process,
    workers_of,
)

pytestmark = pytest.mark.live

BOUND = 30.0  # seconds: every wait of these tests ends by then


def start(tmp_path: Path, *args: str, workers: int = 2) -> ServerProcess:
    server = start_server_process(
        tmp_path,
        "--database-url",
        f"sqlite:///{tmp_path / 'sup.db'}",
        "--workers",
        str(workers),
        *args,
    )
    return server.wait_ready()


def replacement(server: ServerProcess, gone: int, before: set[int]) -> set[int]:
    """The workers once `gone` has been replaced (bounded wait)."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        now = workers_of(server)
        if gone not in now and now != before - {gone}:
            return now
        time.sleep(0.1)
    pytest.fail(f"worker {gone} was not replaced:\n{server.output()}")


def newcomer(server: ServerProcess, known: set[int]) -> int:
    """A worker process started after `known` were, as soon as it exists (bounded wait)."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        fresh = {
            pid
            for pid in child_pids(server.process.pid) - known
            if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        }
        if fresh:
            return min(fresh)
        time.sleep(0.05)
    pytest.fail(f"no worker was started:\n{server.output()}")


def test_two_deaths_in_a_row_are_replaced_and_the_server_keeps_serving(tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        workers = workers_of(server)
        os.kill(min(workers), signal.SIGKILL)
        # Its replacement dies right after its start, as a second OOM kill would do it.
        os.kill(newcomer(server, workers), signal.SIGKILL)
        deadline = time.monotonic() + BOUND
        while len(workers_of(server) & workers) != 1 or server.process.poll() is not None:
            assert server.process.poll() is None, server.output()
            assert time.monotonic() < deadline
        with server.client() as http:
            assert http.get(SETTINGS_PATH, headers=ADMIN).status_code == 200
        assert server.process.poll() is None, server.output()
    finally:
        server.close()


def test_a_crash_loop_past_the_budget_stops_the_server(tmp_path: Path) -> None:
    server = start(tmp_path, "--worker-deaths-per-minute", "2")
    try:
        workers = workers_of(server)
        for _ in range(2):
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            workers = replacement(server, victim, workers)
        os.kill(min(workers), signal.SIGKILL)  # the third death within the minute
        assert server.process.wait(BOUND) == 2
        errors = [line for line in server.stderr().splitlines() if line.startswith(ERROR_PREFIX)]
        assert len(errors) == 1, server.stderr()
        assert "3 worker processes died within a minute" in errors[0]
        assert "Traceback" not in server.stderr()
    finally:
        server.close()


def test_workers_end_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    server = start(tmp_path)
    try:
        workers = workers_of(server)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(BOUND)
        deadline = time.monotonic() + BOUND
        while any(pid_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            time.sleep(0.1)
        # Nothing holds the port any more.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", server.port))
    finally:
        server.kill()


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_on_sigterm_new_connections_are_refused_while_calls_in_flight_finish(
    tmp_path: Path, workers: int
) -> None:
    server = start(tmp_path, workers=workers)
    try:
        with server.client() as http:
            fault = {"method": "GET", "path": SETTINGS_PATH, "delayMs": 4000, "times": 1}
            assert http.post("/_mock/faults", json=fault).status_code in (200, 201)
        answers: list[int] = []
        in_flight = threading.Thread(
            target=lambda: answers.append(
                httpx.get(server.url + SETTINGS_PATH, headers=ADMIN, timeout=BOUND).status_code
            )
        )
        in_flight.start()
        with server.client() as http:  # the call has claimed the rule: it is in its delay
            deadline = time.monotonic() + BOUND
            while http.get("/_mock/faults").json()["faults"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + BOUND
        while not refused(server.port):
            assert time.monotonic() < deadline, "new connections were still taken"
            time.sleep(0.05)
        assert in_flight.is_alive(), "the call in flight ended before the refusal was seen"
        in_flight.join(BOUND)
        assert answers == [200]
        assert server.process.wait(BOUND) == 0
    finally:
        server.close()
