"""Pure ASGI middleware for what applies to every response: vendor headers and the size limit."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analytics_mock.api.errors import COMMON_RAW_HEADERS, error_response
from analytics_mock.errors import (
    BodyTooLarge,
    InternalError,
    RequestHeadTooLarge,
    UnsupportedTransferCoding,
)

logger = logging.getLogger("analytics_mock.api")


# In the scope's state: the status the HTTP protocol answered a request with, when it refused
# one the app already had (a body that stalled or broke its framing). The journal records it.
ANSWERED_HERE = "analytics_mock.answered_here"


def header_of(scope: Scope, name: bytes) -> str | None:
    """The request's first header `name` (lower case), as `request.headers.get` gives it.

    Read from the scope: building Starlette's `Headers` for one lookup costs more than the
    lookup, on every call.
    """
    value: bytes
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def declared_length(scope: Scope) -> int:
    """The request's Content-Length, 0 when absent or unreadable."""
    try:
        return int(header_of(scope, b"content-length") or 0)
    except ValueError:
        return 0


def listed_values(scope: Scope, name: bytes) -> list[str]:
    """The comma-separated values of every `name` header line, stripped, in lower case."""
    return [
        part.strip().lower()
        for key, value in scope["headers"]
        if key == name
        for part in value.decode("latin-1").split(",")
    ]


async def whole_body(receive: Receive) -> bytes:
    """The request body's chunks joined; `ClientDisconnect` when the client left first.

    Not Starlette's `Request.body`: its async generator cost a PUT at 64 connections several
    per cent of its CPU (docs/performance.md).
    """
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _read_ahead(receive: Receive) -> Receive:
    """The whole body read now, and a receive that hands it over as one message."""
    pending: list[Message] = [{"type": "http.request", "body": await whole_body(receive)}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


# The HTTP protocol (`http_protocol.py`) refuses a head past 16 KiB while it is still arriving;
# one read whole is parsed. The same limit here gives it the same answer.
MAX_HEAD_SIZE = 16 * 1024


def head_size(scope: Scope) -> int:
    """The size of the request line and headers as they were sent, give or take spacing."""
    line = len(scope["method"]) + len(scope.get("raw_path") or b"") + 11
    query = scope.get("query_string", b"")
    return (
        line
        + (len(query) + 1 if query else 0)
        + sum(len(n) + len(v) + 4 for n, v in scope["headers"])
    )


def head_too_large() -> RequestHeadTooLarge:
    """The refusal of a head over `MAX_HEAD_SIZE`, the same from the app and the HTTP layer."""
    return RequestHeadTooLarge(
        f"The request line and headers are larger than {MAX_HEAD_SIZE} bytes."
    )


class HeadLimitMiddleware:
    """Refuses a request head over `MAX_HEAD_SIZE`, before anything else, as the HTTP layer does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and head_size(scope) > MAX_HEAD_SIZE:
            await error_response(scope, head_too_large())(scope, receive, send)
            return
        await self.app(scope, receive, send)


class VendorHttpMiddleware:
    """Adds the vendor's headers to every response and refuses oversized bodies early."""

    def __init__(self, app: ASGIApp, *, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        length = declared_length(scope)
        if length > self.max_body_size:
            await error_response(scope, self._too_large())(scope, receive, send)
            return
        codings = listed_values(scope, b"transfer-encoding")
        if codings not in ([], ["chunked"]):  # a body this server cannot decode
            await error_response(scope, UnsupportedTransferCoding())(scope, receive, send)
            return
        started = False

        # One wrapper on the hot path: it marks the start and adds the vendor's headers.
        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [pair for pair in COMMON_RAW_HEADERS if pair[0] not in present]
                token = state.get("hsso_token")
                if token and b"www-authenticate" not in present:
                    headers.append((b"www-authenticate", f"HSSO {token}".encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            if length or codings:
                # Read whole before the app answers: a call that takes no body (a reset) must
                # not act on a request that has not ended, or that a 413 or a 408 refuses. A
                # request that declares none has none (HTTP/1.1): nothing to count or read.
                receive = await _read_ahead(self._limited(receive))
            await self.app(scope, receive, send_with_headers)
        except BodyTooLarge as exc:
            if started:
                raise
            await error_response(scope, exc)(scope, receive, send_with_headers)
        except ClientDisconnect:
            # Nobody is left to answer; a client closing mid-request is no server error.
            logger.info("client left before its request was read: %s", scope["method"])
        except Exception:
            if started:
                raise
            # Answered here rather than by Starlette's ServerErrorMiddleware, which re-raises
            # so that uvicorn drops the connection a keep-alive client is about to reuse.
            logger.exception("unexpected error on %s %s", scope["method"], scope["path"])
            await error_response(scope, InternalError())(scope, receive, send_with_headers)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(f"The request body is larger than {self.max_body_size} bytes.")

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                # A chunked body has no Content-Length to check up front.
                if received > self.max_body_size:
                    raise self._too_large()
            return message

        return limited_receive
