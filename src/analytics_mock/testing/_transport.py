"""A sync httpx transport to an ASGI app (imported only when an in-process emulator is built)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal


class SyncASGITransport(httpx.BaseTransport):
    """Sync requests to an ASGI app: an `httpx.ASGITransport` driven from one event-loop thread.

    Does for a plain `httpx.Client` what Starlette's `TestClient` does. The loop thread (an
    anyio blocking portal) starts on first use and ends with `shutdown`, not when a client
    using the transport closes. Exceptions the app raises reach the caller (a `drop` fault
    raises `ConnectionDroppedError`).
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
