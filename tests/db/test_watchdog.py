"""The watchdog ends a blocked socket read at its deadline, and only then."""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc

from analytics_mock.db.watchdog import Watchdog


class FakeConnection:
    """A driver connection as far as the watchdog cares: it has a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


def test_a_blocked_read_ends_at_the_deadline() -> None:
    watchdog = Watchdog()
    ours, theirs = socket.socketpair()
    try:
        started = time.monotonic()
        with watchdog.guard(FakeConnection(ours), 0.3) as guard:
            data = ours.recv(16)  # the peer never writes: only the watchdog can end this
        elapsed = time.monotonic() - started
        assert data == b""
        assert guard is not None and guard.fired
        assert 0.25 <= elapsed < 5
    finally:
        watchdog.close()
        ours.close()
        theirs.close()


def test_work_that_finishes_in_time_is_left_alone() -> None:
    watchdog = Watchdog()
    ours, theirs = socket.socketpair()
    try:
        with watchdog.guard(FakeConnection(ours), 0.2) as guard:
            theirs.sendall(b"ok")
            assert ours.recv(16) == b"ok"
        time.sleep(0.4)  # past the deadline, after the block
        theirs.sendall(b"still")
        assert ours.recv(16) == b"still"
        assert guard is not None and not guard.fired
        assert watchdog.fired == 0
    finally:
        watchdog.close()
        ours.close()
        theirs.close()


def test_a_connection_without_a_socket_is_not_watched() -> None:
    watchdog = Watchdog()
    with watchdog.guard(object(), 0.01) as guard:
        assert guard is None
    watchdog.close()


def test_many_guards_fire_in_deadline_order() -> None:
    watchdog = Watchdog()
    pairs = [socket.socketpair() for _ in range(3)]
    ended: list[int] = []
    lock = threading.Lock()

    def wait(index: int, seconds: float) -> None:
        ours = pairs[index][0]
        with watchdog.guard(FakeConnection(ours), seconds):
            ours.recv(16)
        with lock:
            ended.append(index)

    threads = [threading.Thread(target=wait, args=(i, s)) for i, s in enumerate((0.6, 0.2, 0.4))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=5)
        assert ended == [1, 2, 0]
        assert watchdog.fired == 3
    finally:
        watchdog.close()
        for a, b in pairs:
            a.close()
            b.close()


def test_finished_guards_keep_no_memory_until_their_deadline() -> None:
    watchdog = Watchdog()
    ours, theirs = socket.socketpair()
    connection = FakeConnection(ours)
    try:
        for _ in range(100):
            with watchdog.guard(connection, 60):
                pass
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            # A busy server's units, each done long before its 60 s deadline.
            for _ in range(10_000):
                with watchdog.guard(connection, 60):
                    pass
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 50_000, grown  # kept until their deadlines, they took about 1 MB
        # An overrun behind finished guards still fires.
        with watchdog.guard(connection, 0.2) as guard:
            assert ours.recv(16) == b""
        assert guard is not None and guard.fired
    finally:
        watchdog.close()
        ours.close()
        theirs.close()
