"""Deadlines for database work on a network connection.

libpq's timeouts (connect_timeout, keepalives, tcp_user_timeout) only end a connection whose peer
stops acknowledging. A server or proxy that hangs while TCP still acknowledges holds a query
forever. The watchdog shuts down the socket of a connection whose unit of work overran its
deadline, so the blocked driver call fails at once and the pool discards the connection.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("analytics_mock.db")

# How long the idle thread sleeps before it looks again; a guard due sooner wakes it.
IDLE_WAKE = 1.0


class Guard:
    """One armed deadline; `fired` tells whether the watchdog shut its connection down."""

    __slots__ = ("active", "deadline", "fd", "fired", "seq")

    def __init__(self, deadline: float, seq: int, fd: int) -> None:
        self.deadline = deadline
        self.seq = seq
        self.fd = fd
        self.active = True
        self.fired = False

    def __lt__(self, other: Guard) -> bool:
        return (self.deadline, self.seq) < (other.deadline, other.seq)


def socket_of(dbapi_connection: Any) -> int | None:
    """The socket file descriptor of a driver connection, None when it has none (SQLite)."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return None
    try:
        fd = fileno()
    except Exception:  # a closed or broken connection has no socket to watch
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def shut_down(fd: int) -> None:
    """Shut the socket down in both directions, leaving the descriptor to its owner."""
    try:
        # A duplicate, so that closing our handle does not close the driver's descriptor.
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone


class Watchdog:
    """One thread that shuts down the sockets of connections past their deadline."""

    def __init__(self) -> None:
        self._heap: list[Guard] = []
        self._lock = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.fired = 0
        # When the thread looks at the heap next: a guard due later needs no wake-up, so a
        # busy server's guards cost no thread switch each.
        self._wake_at = 0.0

    @contextmanager
    def guard(self, dbapi_connection: Any, seconds: float) -> Iterator[Guard | None]:
        """Within the block, the connection's socket is shut down once `seconds` have passed."""
        fd = socket_of(dbapi_connection)
        if fd is None or seconds <= 0:
            yield None
            return
        entry = Guard(time.monotonic() + seconds, next(self._seq), fd)
        with self._lock:
            heapq.heappush(self._heap, entry)
            if entry.deadline < self._wake_at:
                self._lock.notify()
            self._start()
        try:
            yield entry
        finally:
            # Under the lock, so the watchdog never shuts a descriptor its owner has moved on from.
            with self._lock:
                entry.active = False
                # Finished guards leave as they finish: left for the watchdog, which wakes at
                # the first deadline, a busy server's would pile up for the whole deadline
                # (thousands a second). Guards mostly finish in the order they began.
                self._drop_finished()

    def close(self) -> None:
        """Stop the thread; a later guard starts a new one."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            self._lock.notify()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            self._closed = False
            if any(entry.active for entry in self._heap):
                self._start()

    def _drop_finished(self) -> None:
        # Under the lock. Only the top is looked at: a finished guard behind an active one
        # leaves once the guards before it have.
        while self._heap and not self._heap[0].active:
            heapq.heappop(self._heap)

    def _start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._watch, name="analytics-mock-db-watchdog", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        me = threading.current_thread()
        with self._lock:
            while not self._closed and self._thread is me:
                self._drop_finished()
                now = time.monotonic()
                wait = self._heap[0].deadline - now if self._heap else IDLE_WAKE
                if wait > 0:
                    self._wake_at = now + wait
                    self._lock.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
                entry.active = False
                entry.fired = True
                self.fired += 1
                logger.warning("database call overran its deadline: closing its connection")
                shut_down(entry.fd)
