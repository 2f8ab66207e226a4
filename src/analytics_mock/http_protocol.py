"""uvicorn's httptools protocol, answering the requests it refuses in the vendor's envelope.

uvicorn answers a request it cannot parse (a malformed line or header) with its own plain-text
400 before any app sees it. Every error of the emulated server leaves in the vendor's envelope,
so this protocol renders that 400 as `MalformedRequest`. httptools itself buffers a head of any
size; this protocol refuses one still arriving past `MAX_HEAD_SIZE` with `head_too_large()`,
as `HeadLimitMiddleware` refuses a whole head past the same size.

It also bounds how long a connection may hold the server (`EdgeLimits`, docs/security.md):
a new connection must begin a request within the idle timeout, a head must be complete within
the head timeout of its first byte, and a body may pause at most the body idle timeout between
bytes and take at most the body timeout in all; a late request is answered 408 and closed.
Past the connection cap a request is answered 503 without reaching the app.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from analytics_mock.api.errors import COMMON_RAW_HEADERS, envelope
from analytics_mock.api.middleware import ANSWERED_HERE, MAX_HEAD_SIZE, head_too_large
from analytics_mock.errors import DomainError, MalformedRequest
from analytics_mock.settings import Settings

logger = logging.getLogger("analytics_mock.http")

# Descriptors kept back from the connection cap for the database, log and key files, and for
# accepting connections past the cap long enough to answer them 503.
FD_RESERVE = 32
# Seconds a connection past the cap may take to send the head its 503 answers.
OVER_CAP_FUSE = 1.0
# The same complaint (the cap reached, descriptors exhausted) is logged at most this often.
COMPLAINT_INTERVAL = 60.0


class RequestTimeout(DomainError):
    """A request that did not arrive in time [pick]."""

    status = 408
    message_id = "KNAQ20801-E"

    def __init__(self) -> None:
        super().__init__("The request did not arrive in time.")


class ServerBusy(DomainError):
    """More connections open than the server takes [pick]."""

    status = 503
    message_id = "KNAQ25301-E"

    def __init__(self) -> None:
        super().__init__(
            "The server has too many open connections; try again later.",
            headers={"Retry-After": "1"},
        )


class RateLimitedLog:
    """Logs one message at most once per `interval`, counting what it held back."""

    def __init__(self, interval: float = COMPLAINT_INTERVAL) -> None:
        self.interval = interval
        self._last = -interval
        self.suppressed = 0

    def warning(self, message: str, *args: object) -> None:
        """Log `message` unless it was logged within the interval."""
        now = time.monotonic()
        if now - self._last < self.interval:
            self.suppressed += 1
            return
        held, self.suppressed, self._last = self.suppressed, 0, now
        suffix = f" ({held} more since the last such line)" if held else ""
        logger.warning(message + suffix, *args)


def descriptor_limit() -> int | None:
    """This process's soft limit on open files, None when unlimited."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


@dataclass
class EdgeLimits:
    """Timeouts and the connection cap of one process; its connections are counted here."""

    head_timeout: float = 10.0
    body_idle_timeout: float = 10.0
    body_timeout: float = 60.0
    idle_timeout: float = 5.0
    max_connections: int = 1000
    connections: set[Any] = field(default_factory=set)
    over_cap_log: RateLimitedLog = field(default_factory=RateLimitedLog)

    @classmethod
    def from_settings(cls, settings: Settings) -> EdgeLimits:
        """The settings' limits, the cap lowered to fit under the descriptor limit."""
        cap = settings.max_connections
        fds = descriptor_limit()
        if fds is not None:
            cap = max(1, min(cap, fds - FD_RESERVE))
        return cls(
            head_timeout=settings.head_timeout,
            body_idle_timeout=settings.body_idle_timeout,
            body_timeout=settings.body_timeout,
            idle_timeout=settings.idle_timeout,
            max_connections=cap,
        )


_ACCEPT_EXHAUSTED = "socket.accept() out of system resource"
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ListeningSocket(socket.socket):
    """A listening socket that, out of descriptors, fails one accept per wake-up, not 2,048.

    asyncio's accept loop tries up to `backlog` accepts per wake-up, and on each failure for
    want of a descriptor reports it and schedules another start of serving a second later:
    thousands of reports and timers a second. After one such failure this socket says "no
    connection waiting" until the loop's current callback ends, so asyncio reports once and
    retries once.
    """

    _held = False

    def accept(self) -> tuple[socket.socket, Any]:
        """Accept a connection, or raise as `socket.accept` does (see the class)."""
        if self._held:
            raise BlockingIOError(errno.EAGAIN, "held until the next retry")
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno in _OUT_OF_RESOURCES:
                self._held = True
                asyncio.get_running_loop().call_soon(self._release)
            raise

    def _release(self) -> None:
        self._held = False


def listening_socket(sock: socket.socket) -> ListeningSocket:
    """`sock` as a `ListeningSocket`: the same descriptor, which `sock` gives up."""
    return ListeningSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())


class AcceptErrorFilter:
    """An event-loop exception handler: running out of descriptors is one line a minute.

    asyncio logs a traceback for every accept that fails for want of a descriptor, and tries
    again a second later; the retry stays, the traceback becomes a rate-limited line.
    """

    def __init__(self, previous: Callable[..., object] | None = None) -> None:
        self.previous = previous
        self.log = RateLimitedLog()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Handle one exception the loop reports."""
        callback = getattr(context.get("handle"), "_callback", None)
        if (
            isinstance(context.get("exception"), ValueError)
            and getattr(callback, "__name__", "") == "_start_serving"
        ):
            return  # a retry to accept on a socket closed since (the server stopped)
        if context.get("message") == _ACCEPT_EXHAUSTED:
            exc = context.get("exception")
            self.log.warning(
                "cannot accept connections: %s (descriptor limit %s); accepting again as "
                "soon as connections close",
                getattr(exc, "strerror", None) or exc,
                descriptor_limit(),
            )
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)


def path_of(target: bytes) -> str:
    """The path of a request target (`/...`, without its query), or "" when it is not one."""
    return target.split(b"?", 1)[0].decode("latin-1") if target.startswith(b"/") else ""


def request_target(start: bytes) -> str:
    """The path of a request line at the start of `start`, or "" when there is none."""
    line = start.split(b"\r\n", 1)[0].split(b" ")
    return path_of(line[1]) if len(line) == 3 else ""


class VendorHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose refusals are the vendor's envelope, with a limit on the head."""

    _between_messages = True  # no part of a request is buffered
    _head_open = False  # a request has begun and its headers have not ended
    _head_bytes = 0
    _heads_begun = 0  # in the chunk being parsed
    _request_start = b""
    _too_large = False
    _body_open = False  # a head has ended and its body has not
    _over_cap = False
    _answered = False  # refused here: the parser's further callbacks are ignored
    _deadline: asyncio.TimerHandle | None = None
    _timer_for = ""  # what `_deadline` times: "idle", "head" or "body"
    _head_began = 0.0
    _body_began = 0.0
    _body_last = 0.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "edge_limits", None)
        self.limits: EdgeLimits = limits if isinstance(limits, EdgeLimits) else _DEFAULT_LIMITS
        # Between requests, uvicorn's keep-alive timer applies the same idle timeout.
        self.timeout_keep_alive = self.limits.idle_timeout  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection; it must begin a request within the idle timeout."""
        super().connection_made(transport)
        connections = self.limits.connections
        connections.add(self)
        if len(connections) > self.limits.max_connections:
            self._over_cap = True
            self.limits.over_cap_log.warning(
                "%d connections open, the cap (--max-connections, lowered to fit the "
                "descriptor limit): new ones are answered 503",
                self.limits.max_connections,
            )
        # On TLS this runs after the handshake: the idle timeout starts there.
        self._arm(self._fuse(self.limits.idle_timeout), "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop counting the connection and its timer."""
        self.limits.connections.discard(self)
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse `data`; refuse a head that is still open past `MAX_HEAD_SIZE` bytes."""
        began_between = self._between_messages
        if began_between:
            self._request_start = data[:4096]
        self._heads_begun = 0
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm()
            return
        # Timers only for a request that spans chunks: most arrive whole in one.
        if self._head_open:
            if self._timer_for != "head":
                now = self.loop.time()
                limit = self._fuse(self.limits.head_timeout)
                self._arm(self._head_began + limit - now, "head")
        elif self._body_open:
            self._body_last = self.loop.time()
            if self._timer_for != "body":
                self._arm(self.limits.body_idle_timeout, "body")
        elif self.cycle is not None and self.cycle.response_complete:
            # The rest of a body that came after its answer (the app did not read it): uvicorn
            # stopped its keep-alive timer when these bytes came and arms it only at an answer.
            self._arm(self._fuse(self.limits.idle_timeout), "idle")
        else:
            self._disarm()
        if not self._head_open:
            return
        # A head that began after the end of another message in this chunk starts at an offset
        # the parser does not tell: its bytes are counted from the next chunk on.
        if self._heads_begun == 0 or (self._heads_begun == 1 and began_between):
            self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_SIZE:
            self.logger.warning("Request head larger than %d bytes refused.", MAX_HEAD_SIZE)
            self._refuse(head_too_large())

    def on_url(self, url: bytes) -> None:
        """Collect the target; stop parsing one past the limit, which httptools cannot parse."""
        super().on_url(url)
        if len(self.url) > MAX_HEAD_SIZE:
            # httptools parses a target only up to 64 KiB; the parser turns this into a 400.
            self._too_large = True
            raise ValueError("request target too large")

    def on_message_begin(self) -> None:
        """Start counting the bytes of a new head, and its time."""
        super().on_message_begin()
        self._between_messages = False
        self._head_open = True
        self._head_bytes = 0
        self._heads_begun += 1
        self._head_began = self.loop.time()

    def on_headers_complete(self) -> None:
        """The head has ended: stop counting; past the cap, answer 503 here."""
        self._head_open = False
        if self._answered:
            return
        if self._over_cap:
            self._refuse(ServerBusy())
            return
        self._body_open = True
        self._body_began = self._body_last = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Pass the body on, unless the request was answered here."""
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The next bytes start a new request."""
        self._body_open = False
        self._between_messages = True
        if not self._answered:
            super().on_message_complete()

    def _fuse(self, timeout: float) -> float:
        # Past the cap a connection only waits for its 503: it gets a second at most, so
        # that a crowd of them frees descriptors quickly.
        return min(timeout, OVER_CAP_FUSE) if self._over_cap else timeout

    def _arm(self, delay: float, purpose: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(max(0.0, delay), self._expired)
        self._timer_for = purpose

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
            self._timer_for = ""

    def _expired(self) -> None:
        """A timer ran out: close the connection, answering 408 when a request is late."""
        self._deadline = None
        self._timer_for = ""
        if self.transport.is_closing():
            return
        if self._head_open:
            self._refuse(RequestTimeout())
        elif self._body_open:
            self._body_expired()
        elif self.cycle is None or self.cycle.response_complete:
            self.transport.close()  # nothing asked yet (or since the last answer)

    def _body_expired(self) -> None:
        now = self.loop.time()
        whole = self._body_began + self.limits.body_timeout
        idle = self.limits.body_idle_timeout
        # The app is not reading (flow control), or bytes came since the timer was set.
        paused = self.flow.read_paused
        if now < whole and (paused or now < self._body_last + idle):
            self._arm(min(whole, (now if paused else self._body_last) + idle) - now, "body")
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The app waits for the rest of the body: it now reads a disconnect.
            cycle.disconnected = True
            cycle.message_event.set()
            self._refuse(RequestTimeout())
        else:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """Answer in the envelope with the vendor's headers, then close (as uvicorn does)."""
        self._refuse(head_too_large() if self._too_large else MalformedRequest())

    def _refuse(self, error: DomainError) -> None:
        if self._answered:  # one refusal a connection: a later timer adds none behind it
            return
        self._answered = True
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.more_body:
                # The app has this request, whose body failed: its journal entry records the
                # answer sent here, not the one the app makes (which nobody reads).
                cycle.scope.setdefault("state", {})[ANSWERED_HERE] = error.status
            else:
                # A later request failed while this one, the newest the app has, is still being
                # answered: its answer (and any before it) goes first, then the refusal; uvicorn
                # would drop them all for it.
                source = "" if self._between_messages else path_of(self.url)
                answered = cycle.on_response

                def then_refuse() -> None:
                    answered()
                    self._send_refusal(error, source)

                cycle.on_response = then_refuse
                self.flow.pause_reading()
                return
        self._send_refusal(error, request_target(self._request_start))

    def _send_refusal(self, error: DomainError, source: str) -> None:
        body = envelope(source, error)
        head = [
            STATUS_LINE[error.status],
            *(name + b": " + value + b"\r\n" for name, value in COMMON_RAW_HEADERS),
            *(f"{name}: {value}\r\n".encode("latin-1") for name, value in error.headers.items()),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


_DEFAULT_LIMITS = EdgeLimits()
