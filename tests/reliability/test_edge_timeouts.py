"""Hostile connections are bounded in time and number; a normal client is still served.

Each server runs with a low descriptor limit (`ulimit -n`), short timeouts, and more hostile
connections than it has descriptors: silent ones, heads and bodies trickled a byte at a time.
The server cuts them at their timeouts (a late request gets a 408 envelope), answers past its
connection cap with a 503 envelope, logs running out of descriptors as one line, and serves a
well-behaved client all along.
"""

from __future__ import annotations

import contextlib
import re
import resource
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.helpers import (
    ADMIN,
    OBJECT_PATH,
    SETTINGS_PATH,
    journalled,
    read_until_closed,
)
from tests.support.servers import ServerProcess, start_server_process

pytestmark = pytest.mark.live

DESCRIPTORS = 64
HEAD_TIMEOUT = 2.0
TIMEOUTS = (
    "--head-timeout",
    str(HEAD_TIMEOUT),
    "--idle-timeout",
    "1",
    "--body-idle-timeout",
    "1",
    "--body-timeout",
    "3",
)
TRICKLE = 0.3  # seconds between the bytes a trickling client sends
BOUND = 20.0  # seconds: every wait of these tests ends by then


@contextmanager
def descriptor_limit(limit: int) -> Iterator[None]:
    """Processes started inside inherit `ulimit -n limit`; this process gets its own back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def start(
    tmp_path: Path, *args: str, limit: int = DESCRIPTORS, https: bool = False
) -> ServerProcess:
    with descriptor_limit(limit):
        server = start_server_process(
            tmp_path,
            "--database-url",
            f"sqlite:///{tmp_path / 'edge.db'}",
            "--test-mail-mode",
            "capture",
            *args,
            https=https,
        )
    return server.wait_ready()


@dataclass
class Hostile:
    """One connection that sends `first` and then `trickle` a byte at a time, or nothing."""

    first: bytes
    trickle: bytes = b""
    sock: socket.socket | None = None
    answer: bytes = b""
    closed: bool = False


@dataclass
class Horde:
    """Hostile connections driven by one thread until each is closed by the server."""

    port: int
    members: list[Hostile]
    stop: threading.Event = field(default_factory=threading.Event)
    all_closed: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        for member in self.members:
            # The kernel completes the handshake even when the server cannot accept yet.
            member.sock = socket.create_connection(("127.0.0.1", self.port), timeout=BOUND)
            member.sock.setblocking(False)
            if member.first:
                member.sock.sendall(member.first)
        offset = 0
        while not self.stop.is_set():
            for member in self.members:
                self._poll(member, offset)
            if all(member.closed for member in self.members):
                self.all_closed.set()
                return
            offset += 1
            self.stop.wait(TRICKLE)

    def _poll(self, member: Hostile, offset: int) -> None:
        if member.closed or member.sock is None:
            return
        try:
            while chunk := member.sock.recv(65536):
                member.answer += chunk
            member.closed = True  # an orderly close
        except BlockingIOError:
            if offset < len(member.trickle):
                try:
                    member.sock.send(member.trickle[offset : offset + 1])
                except OSError:
                    member.closed = True
        except OSError:
            member.closed = True
        if member.closed:
            member.sock.close()

    def close(self) -> None:
        self.stop.set()
        for member in self.members:
            if member.sock is not None:
                member.sock.close()


@contextmanager
def horde(port: int, members: list[Hostile]) -> Iterator[Horde]:
    crowd = Horde(port, members)
    thread = threading.Thread(target=crowd.run, daemon=True)
    thread.start()
    try:
        yield crowd
    finally:
        crowd.close()
        thread.join(BOUND)


def head(method: str = "GET", path: str = SETTINGS_PATH, extra: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Authorization: "
        + ADMIN["Authorization"].encode()
        + b"\r\n"
        + extra
        + b"\r\n"
    )


def mixed_crowd(count: int) -> list[Hostile]:
    """Silent connections, heads trickled for ever, bodies that stop or trickle for ever."""
    body_head = head(
        "PUT", OBJECT_PATH, b"Content-Type: application/json\r\nContent-Length: 400\r\n"
    )
    kinds = [
        Hostile(b""),
        Hostile(b"G", head()[1:] * 50),
        Hostile(body_head + b'{"hostname"'),
        Hostile(body_head, b" " * 400),
    ]
    return [Hostile(kinds[i % 4].first, kinds[i % 4].trickle) for i in range(count)]


def status_of(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def test_more_hostile_connections_than_descriptors_do_not_stop_a_normal_client(
    tmp_path: Path,
) -> None:
    server = start(tmp_path, *TIMEOUTS)
    try:
        with horde(server.port, mixed_crowd(DESCRIPTORS * 3)) as crowd:
            # The hostile connections hold every descriptor when this one comes: it is
            # answered 503 (Retry-After) or waits in the backlog, and is served once the
            # server has cut the hostile ones at their timeouts.
            with httpx.Client(base_url=server.url, timeout=BOUND) as http:
                deadline = time.monotonic() + BOUND
                while (response := http.get(SETTINGS_PATH, headers=ADMIN)).status_code == 503:
                    assert response.json()["messageID"] == "KNAQ25301-E"
                    assert time.monotonic() < deadline, "never served"
                    crowd.stop.wait(float(response.headers["retry-after"]))
                assert response.status_code == 200, response.text
            assert crowd.all_closed.wait(BOUND), "the server held hostile connections"
            answers = [member.answer for member in crowd.members]
        # A request the server had begun to read and that stalled is answered 408.
        late = [answer for answer in answers if status_of(answer) == 408]
        assert late, "no late request was answered"
        assert all(b'"messageID":"KNAQ20801-E"' in answer for answer in late)
        # A hostile request whose head completes while the process is out of descriptors can
        # find the database unable to open a file: a 503 to retry, as past the cap.
        busy = [answer for answer in answers if status_of(answer) == 503]
        assert all(b'"messageID":"KNAQ25301-E"' in answer for answer in busy)
        assert all(b"\r\nretry-after: 1\r\n" in answer.lower() for answer in busy)
        assert {status_of(answer) for answer in answers} <= {None, 408, 503}
        with httpx.Client(base_url=server.url, timeout=BOUND) as http:
            assert http.get(SETTINGS_PATH, headers=ADMIN).status_code == 200
    finally:
        server.stop()
    log = server.stderr()
    assert "Traceback" not in log
    assert log.count("cannot accept connections") <= 2
    assert len(log) < 20_000, log[-5000:]


def test_past_the_connection_cap_a_request_gets_a_503_envelope(tmp_path: Path) -> None:
    server = start(tmp_path, "--max-connections", "4", "--head-timeout", "30")
    try:
        members = [Hostile(b"G", head()[1:]) for _ in range(4)]
        with horde(server.port, members), httpx.Client(base_url=server.url, timeout=BOUND) as http:
            deadline = time.monotonic() + BOUND
            while True:  # until the four trickling connections are accepted
                response = http.get(SETTINGS_PATH, headers=ADMIN)
                if response.status_code == 503 or time.monotonic() > deadline:
                    break
            assert response.status_code == 503, response.text
            assert response.json()["messageID"] == "KNAQ25301-E"
            assert response.headers["retry-after"] == "1"
        with httpx.Client(base_url=server.url, timeout=BOUND) as http:
            deadline = time.monotonic() + BOUND
            while (status := http.get(SETTINGS_PATH, headers=ADMIN).status_code) == 503:
                assert time.monotonic() < deadline
            assert status == 200
    finally:
        server.stop()
    assert server.stderr().count("connections open, the cap") == 1


def test_a_tls_connection_idle_after_its_handshake_is_closed(tmp_path: Path) -> None:
    server = start(tmp_path, "--idle-timeout", "1", https=True)
    try:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        assert server.https_port is not None
        address = ("127.0.0.1", server.https_port)
        # Closed without a close_notify is closed too; a timeout would raise.
        with (
            socket.create_connection(address, timeout=BOUND) as raw,
            context.wrap_socket(raw) as tls,
            contextlib.suppress(ssl.SSLEOFError, ConnectionResetError),
        ):
            assert tls.recv(1024) == b""
    finally:
        server.stop()


def test_a_body_that_stops_gets_a_408_envelope(tmp_path: Path) -> None:
    server = start(tmp_path, *TIMEOUTS)
    try:
        request = head(
            "PUT", OBJECT_PATH, b"Content-Type: application/json\r\nContent-Length: 40\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
            sock.sendall(request + b'{"portNumber": 2599')
            answer = read_until_closed(sock)
        assert status_of(answer) == 408, answer
        assert b'"messageID":"KNAQ20801-E"' in answer
        assert (
            b'"errorSource":"/Analytics/v1/objects/EmailServerSettings/mailServerSetting%230"'
            in answer
        )
        with httpx.Client(base_url=server.url, timeout=BOUND) as http:
            stored = http.get(SETTINGS_PATH, headers=ADMIN).json()["data"][0]
            assert stored["portNumber"] != 2599  # the late request changed nothing
        assert journalled(server.url, "PUT")["status"] == 408  # what the client got
    finally:
        server.stop()


def chunked(size: int) -> bytes:
    piece = b"x" * 65536
    chunks = [b"%x\r\n" % len(piece) + piece + b"\r\n" for _ in range(size // len(piece))]
    return b"".join(chunks) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_a_connection_answered_before_its_long_body_ended_is_still_closed_when_idle(
    tmp_path: Path, framing: str
) -> None:
    # Answered (401) before it read the body, so most of the body came after the answer:
    # such a connection then had no timer at all, and stayed open for good.
    server = start(tmp_path, *TIMEOUTS)
    try:
        body = b"x" * 256 * 1024
        if framing == "chunked":
            request = head("PUT", OBJECT_PATH, b"Transfer-Encoding: chunked\r\n") + chunked(
                len(body)
            )
        else:
            request = head("PUT", OBJECT_PATH, b"Content-Length: %d\r\n" % len(body)) + body
        request = request.replace(ADMIN["Authorization"].encode(), b"Basic eDp5")  # x:y
        with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
            sock.sendall(request)
            answer = read_until_closed(sock)
        assert status_of(answer) == 401, answer[:300]
    finally:
        server.stop()


def test_a_control_call_is_answered_only_once_its_body_arrived(tmp_path: Path) -> None:
    # A reset takes no body, but a request that declares one is not done until it arrives:
    # one that stalls is a 408 and changes nothing, one over the limit a 413.
    server = start(tmp_path, *TIMEOUTS, "--max-body-size", "65536")
    try:
        with httpx.Client(base_url=server.url, timeout=BOUND) as http:
            assert (
                http.put(OBJECT_PATH, json={"portNumber": 2600}, headers=ADMIN).status_code == 200
            )
        stalled = head("POST", "/_mock/reset", b"Content-Length: 100\r\n") + b"{}"
        too_large = head("POST", "/_mock/reset", b"Transfer-Encoding: chunked\r\n") + chunked(
            2 * 65536
        )
        for request, status in ((stalled, 408), (too_large, 413)):
            with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
                sock.sendall(request)
                answer = read_until_closed(sock)
            assert status_of(answer) == status, answer[:300]
        with httpx.Client(base_url=server.url, timeout=BOUND) as http:
            stored = http.get(SETTINGS_PATH, headers=ADMIN).json()["data"][0]
            assert stored["portNumber"] == 2600  # no reset happened
    finally:
        server.stop()


def test_a_refusal_waiting_behind_a_slow_answer_is_sent_once(tmp_path: Path) -> None:
    # A PUT held by a delay fault past the head timeout, then a malformed request: its 400 waits
    # for the PUT's answer, and the head timer of that request must not add a 408 after it.
    server = start(tmp_path, *TIMEOUTS)
    try:
        delay_ms = int((HEAD_TIMEOUT + 1) * 1000)
        with httpx.Client(base_url=server.url, timeout=BOUND) as http:
            rule = {"path": "/Analytics/v1/objects/*", "method": "PUT", "delayMs": delay_ms}
            assert http.post("/_mock/faults", json=rule).status_code in (200, 201)
        body = b'{"portNumber": 2603}'
        put = head(
            "PUT",
            OBJECT_PATH,
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=BOUND) as sock:
            sock.sendall(put + body + b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n")
            answers = read_until_closed(sock)
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers) == [b"200", b"400"], answers[:600]
    finally:
        server.stop()
