"""Slow and silent clients of a real server do not stop another client from being served.

One `analytics-mock serve` over SQLite per test. While the slow clients hold their connections
(a body sent byte by byte, a head sent byte by byte, connections that send nothing or half a
request line), a well-behaved client makes calls that must each be answered promptly, and the
slow body must still be answered properly once it is complete. Each scenario is bounded (well
under 10 s).
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH
from tests.support.reliability import StartServer
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.live

PROMPT = 2.0  # seconds: the slowest call allowed to the well-behaved client
BYTE_DELAY = 0.1  # seconds between the bytes a slow client sends
CALLS = 10
AUTHORIZATION = ADMIN["Authorization"].encode()


@pytest.fixture
def server(start_server: StartServer, tmp_path: Path) -> ServerProcess:
    return start_server(f"sqlite:///{tmp_path / 'slow.db'}").wait_ready()


def served_promptly(server: ServerProcess) -> list[float]:
    """Make CALLS calls (reads and writes); each must succeed within PROMPT seconds."""
    durations = []
    with server.client(timeout=PROMPT * 2) as http:
        for index in range(CALLS):
            started = time.monotonic()
            if index % 2:
                response = http.put(OBJECT_PATH, json={"portNumber": 2000 + index}, headers=ADMIN)
            else:
                response = http.get(SETTINGS_PATH, headers=ADMIN)
            durations.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
    assert max(durations) < PROMPT, durations
    assert statistics.median(durations) < PROMPT / 4, durations
    return durations


@dataclass
class Dribbler:
    """A client, in a thread, that sends `at_once` and then `slowly` one byte at a time."""

    port: int
    at_once: bytes
    slowly: bytes
    started: threading.Event = field(default_factory=threading.Event)
    sent: threading.Event = field(default_factory=threading.Event)
    cancel: threading.Event = field(default_factory=threading.Event)
    answer: bytes = b""
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10.0) as sock:
                sock.sendall(self.at_once)
                for index in range(len(self.slowly)):
                    sock.sendall(self.slowly[index : index + 1])
                    self.started.set()
                    if self.cancel.wait(BYTE_DELAY):
                        return
                self.sent.set()
                while True:  # Connection: close, so the answer ends with the connection
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    self.answer += chunk
        except BaseException as exc:
            self.error = exc
        finally:
            self.started.set()
            self.sent.set()


@pytest.fixture
def dribble() -> Iterator[Callable[[int, bytes, bytes], tuple[Dribbler, threading.Thread]]]:
    started: list[tuple[Dribbler, threading.Thread]] = []

    def start(port: int, at_once: bytes, slowly: bytes) -> tuple[Dribbler, threading.Thread]:
        dribbler = Dribbler(port, at_once, slowly)
        thread = threading.Thread(target=dribbler.run, daemon=True)
        started.append((dribbler, thread))
        thread.start()
        return dribbler, thread

    yield start
    for dribbler, thread in started:
        dribbler.cancel.set()
        thread.join(timeout=15.0)


Dribble = Callable[[int, bytes, bytes], tuple[Dribbler, threading.Thread]]


def test_a_body_sent_byte_by_byte_does_not_block_others(
    server: ServerProcess, dribble: Dribble
) -> None:
    body = json.dumps({"hostname": "slow.example.com"}).encode()
    head = (
        b"PUT " + OBJECT_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: " + AUTHORIZATION + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
    )
    slow, thread = dribble(server.port, head, body)  # 3 s of body
    assert slow.started.wait(5.0)
    served_promptly(server)
    assert not slow.sent.is_set(), "the slow body ended before the other calls: no overlap"
    thread.join(timeout=len(body) * BYTE_DELAY + 10.0)
    assert slow.error is None, slow.error
    assert slow.answer.startswith(b"HTTP/1.1 200 "), slow.answer[:300]
    assert json.loads(slow.answer.partition(b"\r\n\r\n")[2])["hostname"] == "slow.example.com"


def test_a_head_sent_byte_by_byte_does_not_block_others(
    server: ServerProcess, dribble: Dribble
) -> None:
    head = (
        b"GET " + SETTINGS_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: " + AUTHORIZATION + b"\r\nConnection: close\r\n\r\n"
    )
    # The request line at once, the rest (about 130 bytes, 13 s) slowly: it outlasts the
    # other calls, and is cancelled at teardown.
    slow, _ = dribble(server.port, head[:20], head[20:])
    assert slow.started.wait(5.0)
    served_promptly(server)
    assert not slow.sent.is_set(), "the slow head ended before the other calls: no overlap"


@pytest.mark.parametrize("first_bytes", [b"", b"GET /Analytics/v1/objects/Email"])
def test_connections_that_send_nothing_do_not_block_others(
    server: ServerProcess, first_bytes: bytes
) -> None:
    with ExitStack() as stack:
        for _ in range(100):
            sock = stack.enter_context(
                socket.create_connection(("127.0.0.1", server.port), timeout=5.0)
            )
            if first_bytes:
                sock.sendall(first_bytes)
        served_promptly(server)
        # Still held open by us, and the server still accepts more.
        served_promptly(server)
    assert server.process.poll() is None
