"""httpx transports to an ASGI app (imported only when an in-process emulator is built)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from analytics_mock.api.controls_middleware import ConnectionDroppedError


def connection_error(error: ConnectionDroppedError, request: httpx.Request) -> httpx.TransportError:
    """The error httpx raises when a real server does to the connection what `error` says."""
    if error.kind == "reset":
        return httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
    return httpx.RemoteProtocolError(
        "Server disconnected without sending a response.", request=request
    )


class ASGITransport(httpx.ASGITransport):
    """`httpx.ASGITransport` whose connection faults raise what they raise over a socket.

    A `drop` or `empty` fault raises `httpx.RemoteProtocolError`, a `reset` `httpx.ReadError`,
    as httpx does against a real server; any other exception of the app reaches the caller.
    """

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` to the app."""
        try:
            return await super().handle_async_request(request)
        except ConnectionDroppedError as error:
            raise connection_error(error, request) from None


class SharedTransport(httpx.BaseTransport):
    """A transport many clients use: closing one of them leaves it open for the others."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self._transport = transport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the shared transport."""
        return self._transport.handle_request(request)

    def close(self) -> None:
        """Nothing: the owner closes the shared transport with `shutdown`."""

    def shutdown(self) -> None:
        """Close the shared transport and its connections."""
        self._transport.close()


class SyncASGITransport(httpx.BaseTransport):
    """Sync requests to an ASGI app: an `httpx.ASGITransport` driven from one event-loop thread.

    Does for a plain `httpx.Client` what Starlette's `TestClient` does. The loop thread (an
    anyio blocking portal) starts on first use and ends with `shutdown`, not when a client
    using the transport closes. Exceptions the app raises reach the caller (see
    `ASGITransport` for the connection faults).
    """

    def __init__(self, transport: httpx.ASGITransport) -> None:
        self._transport = transport
        self._portal: BlockingPortal | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._lock = threading.Lock()

    def _get_portal(self) -> BlockingPortal:
        with self._lock:
            if self._portal is None:
                self._portal_cm = start_blocking_portal()
                self._portal = self._portal_cm.__enter__()
            return self._portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` to the app and return the whole response."""
        body = request.read()
        return self._get_portal().call(self._send, request, body)

    async def _send(self, request: httpx.Request, body: bytes) -> httpx.Response:
        request.stream = httpx.ByteStream(body)
        response = await self._transport.handle_async_request(request)
        content = await response.aread()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(content),
            extensions=response.extensions,
        )

    def shutdown(self) -> None:
        """End the event-loop thread (a later request starts a new one)."""
        with self._lock:
            portal_cm, self._portal_cm, self._portal = self._portal_cm, None, None
        if portal_cm is not None:
            portal_cm.__exit__(None, None, None)
