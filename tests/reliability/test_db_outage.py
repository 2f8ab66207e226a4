"""PostgreSQL goes away under a live server, then comes back.

A TCP proxy on 127.0.0.1 (threads, in this test) sits between `analytics-mock serve` and
PostgreSQL; the server's URL points at the proxy, with a fresh schema. Cutting the proxy makes
the database unreachable, in two ways: `refuse` (every connection closed at once, new ones
closed as soon as accepted: the database is down) and `stall` (connections stay open, TCP
still acknowledges, nothing gets through: a hung database or proxy; a true partition, where
nothing is acknowledged, would need packet filtering, which a test on a shared machine must
not do). While cut, every call must answer the vendor's 500
envelope (503 for `/readyz`) within the client's 15 s timeout, with no trace of the driver or a
stack in the body; `/healthz` still answers 200. Once restored, the server recovers by itself.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from analytics_mock.db.engine import Database, create_database_engine
from analytics_mock.settings import Settings
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH
from tests.support.reliability import StartServer, envelope_problems
from tests.support.servers import POSTGRES_URL, ServerProcess, postgres_schema_url

pytestmark = pytest.mark.live
skip_without_postgres = pytest.mark.skipif(
    POSTGRES_URL is None, reason="ANALYTICS_MOCK_TEST_POSTGRES_URL is not set"
)

CLIENT_TIMEOUT = 15.0
ACTION_PATH = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"


def shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to the database; `cut` and `restore` switch it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.mode = "up"
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.closed = False
        self._spawn(self._accept_loop)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self.lock:
            self.threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed
            if self.mode == "refuse":
                client.close()
                continue
            with self.lock:
                self.sockets.append(client)
            if self.mode == "stall":
                continue  # held open, never answered
            try:
                upstream = socket.create_connection(self.upstream, timeout=5.0)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets.append(upstream)
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self.forwarding.wait()  # a stall holds what it got, forever
                target.sendall(data)
        except OSError:
            pass
        finally:
            shut(source)
            shut(target)

    def _close_connections(self) -> None:
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            shut(sock)
            sock.close()

    def cut(self, mode: str) -> None:
        """`refuse`: close every connection and every new one; `stall`: forward nothing."""
        assert mode in ("refuse", "stall")
        self.mode = mode
        if mode == "refuse":
            self._close_connections()
        else:
            self.forwarding.clear()

    def restore(self) -> None:
        """Forward again; connections caught in a stall are gone, as after a partition."""
        self.mode = "up"
        self._close_connections()
        self.forwarding.set()

    def close(self) -> None:
        shut(self.listener)  # wakes the accept loop (close alone would not, on Linux)
        self.listener.close()
        self.restore()
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout=5.0)


@pytest.fixture
def proxied_server(start_server: StartServer) -> Iterator[tuple[ServerProcess, TcpProxy]]:
    assert POSTGRES_URL is not None
    admin = make_url(POSTGRES_URL)
    proxy = TcpProxy((admin.host or "127.0.0.1", admin.port or 5432))
    try:
        with postgres_schema_url(POSTGRES_URL) as url:
            through_proxy = make_url(url).set(host="127.0.0.1", port=proxy.port)
            server = start_server(through_proxy.render_as_string(hide_password=False))
            server.wait_ready()
            try:
                yield server, proxy
            finally:
                server.kill()  # before the schema is dropped
    finally:
        proxy.close()


class NoAnswerInTime(AssertionError):
    """A call during the outage got no answer within the client's timeout."""


def outage_call(http: httpx.Client, method: str, path: str) -> httpx.Response:
    """One call while the database is away: it must answer, in time, without a leak."""
    started = time.monotonic()
    try:
        if method == "PUT":
            response = http.put(path, json={"portNumber": 2525}, headers=ADMIN)
        else:
            response = http.get(path, headers=ADMIN)
    except httpx.TimeoutException:
        raise NoAnswerInTime(f"{method} {path}: no answer within {CLIENT_TIMEOUT} s") from None
    assert time.monotonic() - started < CLIENT_TIMEOUT
    return response


def fresh_connections(server: ServerProcess) -> httpx.Client:
    """A client that opens a connection per call (see the keep-alive test for why)."""
    return server.client(timeout=CLIENT_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0))


def check_outage(server: ServerProcess) -> None:
    with fresh_connections(server) as http:
        assert outage_call(http, "GET", "/healthz").status_code == 200
        for method, path in [("GET", SETTINGS_PATH), ("PUT", OBJECT_PATH), ("GET", ACTION_PATH)]:
            response = outage_call(http, method, path)
            assert envelope_problems(response, (500, 503)) == [], response.text[:300]
        ready = outage_call(http, "GET", "/readyz")
        assert (ready.status_code, ready.json()) == (503, {"status": "unavailable"})
    assert server.process.poll() is None, server.output()


def check_recovery(server: ServerProcess) -> None:
    """A later call answers 200, without a restart; the first few may still fail."""
    with fresh_connections(server) as http:
        statuses = []
        for _ in range(5):
            response = http.put(OBJECT_PATH, json={"portNumber": 4242}, headers=ADMIN)
            statuses.append(response.status_code)
            if response.status_code == 200:
                break
        assert statuses[-1] == 200, statuses
        listed = http.get(SETTINGS_PATH, headers=ADMIN)
        assert listed.status_code == 200
        assert listed.json()["data"][0]["portNumber"] == 4242
        assert http.get("/readyz").status_code == 200


def baseline(server: ServerProcess) -> None:
    with server.client() as http:
        assert http.put(OBJECT_PATH, json={"portNumber": 587}, headers=ADMIN).status_code == 200
        assert http.get(SETTINGS_PATH, headers=ADMIN).status_code == 200


@pytest.mark.postgres
@skip_without_postgres
def test_database_down_answers_500_and_recovers(
    proxied_server: tuple[ServerProcess, TcpProxy],
) -> None:
    server, proxy = proxied_server
    baseline(server)
    proxy.cut("refuse")
    check_outage(server)
    proxy.restore()
    check_recovery(server)


@pytest.mark.postgres
@skip_without_postgres
def test_stalled_database_answers_in_time_and_recovers(
    proxied_server: tuple[ServerProcess, TcpProxy],
) -> None:
    server, proxy = proxied_server
    baseline(server)
    proxy.cut("stall")
    outcome: list[BaseException | httpx.Response] = []

    def call() -> None:
        try:
            with fresh_connections(server) as http:
                outcome.append(outage_call(http, "GET", SETTINGS_PATH))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    with fresh_connections(server) as http:  # the process itself still answers
        assert outage_call(http, "GET", "/healthz").status_code == 200
    thread.join(timeout=CLIENT_TIMEOUT + 5)
    proxy.restore()
    check_recovery(server)  # after the stall, with no restart
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    assert envelope_problems(result, (500, 503)) == [], result.text[:300]


@pytest.mark.postgres
@skip_without_postgres
def test_a_500_keeps_the_connection_usable(
    proxied_server: tuple[ServerProcess, TcpProxy],
) -> None:
    server, proxy = proxied_server
    baseline(server)
    proxy.cut("refuse")
    request = (
        b"GET " + SETTINGS_PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: " + ADMIN["Authorization"].encode() + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(request)
        first = read_answer(sock)
        assert first.startswith(b"HTTP/1.1 500 "), first[:200]
        if b"\r\nconnection: close\r\n" in first.partition(b"\r\n\r\n")[0].lower():
            return  # announced: the client knows not to reuse the connection
        try:
            sock.sendall(request)
            second = read_answer(sock)
        except OSError as exc:
            second = repr(exc).encode()
    assert second.startswith(b"HTTP/1.1 500 "), second[:200]


def read_answer(sock: socket.socket) -> bytes:
    """One answer with a Content-Length body, or what came before the connection ended."""
    received = b""
    while True:
        head, separator, body = received.partition(b"\r\n\r\n")
        if separator:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return received
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


def test_proxy_forwards_and_cuts(tmp_path: Path) -> None:
    # The proxy itself, against a plain echo server: so an outage test fails for the server's
    # reasons, not the proxy's.
    echo = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    echo.bind(("127.0.0.1", 0))
    echo.listen(8)

    def serve_echo() -> None:
        while True:
            try:
                conn, _ = echo.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(1024):
                    conn.sendall(data)

    thread = threading.Thread(target=serve_echo, daemon=True)
    thread.start()
    proxy = TcpProxy(echo.getsockname())
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0) as sock:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
            proxy.cut("refuse")
            assert sock.recv(4) == b""  # the live connection was cut
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0) as sock:
            assert sock.recv(4) == b""  # and new ones are closed at once
        proxy.restore()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0) as sock:
            sock.sendall(b"pong")
            assert sock.recv(4) == b"pong"
            proxy.cut("stall")
            sock.sendall(b"lost")
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(4)
    finally:
        proxy.close()
        shut(echo)
        echo.close()
        thread.join(timeout=5.0)


@pytest.mark.postgres
@skip_without_postgres
def test_taking_a_pooled_connection_during_a_stall_fits_in_the_deadline() -> None:
    # The checkout pings the pooled connection; when the ping goes unanswered the pool connects
    # anew, which a stall also leaves unanswered: both together within one deadline.
    assert POSTGRES_URL is not None
    admin = make_url(POSTGRES_URL)
    proxy = TcpProxy((admin.host or "127.0.0.1", admin.port or 5432))
    deadline = 4.0
    try:
        with postgres_schema_url(POSTGRES_URL) as url:
            through_proxy = make_url(url).set(host="127.0.0.1", port=proxy.port)
            proxied = through_proxy.render_as_string(hide_password=False)
            settings = Settings(database_url=proxied, database_timeout=deadline)
            db = Database(create_database_engine(settings), timeout=deadline)
            try:
                with db.session() as session:  # leaves one connection idle in the pool
                    session.execute(text("SELECT 1"))
                proxy.cut("stall")
                started = time.monotonic()
                with pytest.raises(OperationalError), db.session() as session:
                    session.execute(text("SELECT 1"))
                assert time.monotonic() - started < deadline + 1.0
            finally:
                proxy.restore()
                db.dispose()
    finally:
        proxy.close()
