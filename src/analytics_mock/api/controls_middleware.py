"""The emulated API's test controls on the wire: maintenance, faults and the request journal."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from functools import partial
from http import HTTPStatus
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analytics_mock.api.dependencies import AUTH_FACTS, PARSED_BODY, authorization_of
from analytics_mock.api.errors import COMMON_HEADERS, error_response
from analytics_mock.api.middleware import ANSWERED_HERE, declared_length
from analytics_mock.db.repositories import Executor
from analytics_mock.db.runner import RIDER, FollowUp
from analytics_mock.errors import (
    DomainError,
    InternalError,
    OutOfDescriptors,
    ServerUnavailable,
    error_for_status,
)
from analytics_mock.logs import Throttled
from analytics_mock.runtime import Runtime
from analytics_mock.services.auth import Facts
from analytics_mock.services.controls import ControlSnapshot, FaultRule, take_fault
from analytics_mock.services.journal import (
    Call,
    journal_entry,
    journal_writer,
    redact_body,
    redact_headers,
    redact_text,
    storable,
)

logger = logging.getLogger("analytics_mock.api")
API_PREFIX = "/Analytics/"
# A body the app never read (a refusal before parsing) is still journalled when this small.
_DRAIN_LIMIT = 64 * 1024

# What a `malformed` fault answers: a JSON document cut short, as a broken proxy might.
MALFORMED_BODY = b'{"data": [{"instanceID": "mailServerSetting#0", "hostname": '


class ConnectionDroppedError(ConnectionError):
    """A connection fault where there is no connection (an in-process transport).

    `kind` is the fault: "drop", "reset" or "empty"; the testing transports turn it into the
    httpx error a client gets over a real socket.
    """

    def __init__(self, kind: str = "drop") -> None:
        super().__init__(f"connection {kind} by a fault rule")
        self.kind = kind


def fault_error(rule: FaultRule) -> DomainError:
    """The vendor-shaped error a status fault answers with, with the rule's extra headers."""
    error = error_for_status(rule.status or 500, rule.message or "Injected fault.")
    error.headers.update(rule.headers)
    return error


def fault_answer(rule: FaultRule) -> Response:
    """The custom answer of a `body`, `malformed` or `headers`-only rule."""
    body = rule.body.encode() if rule.body is not None else MALFORMED_BODY if rule.answer else b""
    return Response(
        body,
        status_code=rule.status or 200,
        headers={**dict(COMMON_HEADERS), **dict(rule.headers)},
        media_type="application/json",
    )


async def drop_connection(receive: Receive, kind: str = "drop", status: int = 200) -> None:
    """Break the client's connection (uvicorn) as `kind` says; raise where there is none.

    "drop" closes it without an answer, "reset" resets it (TCP RST), "empty" sends the status
    line alone and closes it.
    """
    # uvicorn's receive is a bound method of the request cycle, which holds the transport.
    transport: Any = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionDroppedError(kind)
    if kind == "empty":
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        transport.write(f"HTTP/1.1 {status} {phrase}\r\n".encode())
        transport.close()
    else:
        if kind == "reset":
            # Linger on with a zero timeout: closing sends RST instead of FIN.
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # Let connection_lost run, so uvicorn sees a client gone rather than an app that forgot.
    await asyncio.sleep(0)


class ControlsMiddleware:
    """Outermost layer of `/Analytics/`: every call is journalled, whatever answers it."""

    def __init__(self, app: ASGIApp, *, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        # A database that is gone fails every call here: one line a minute, not one a call.
        self.controls_unread = Throttled(
            logger, "cannot read the test controls; calls answered 500"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        call = _CallRecorder(self.runtime, scope, receive, send)
        try:
            await self._serve(scope, receive, call)
        finally:
            self.runtime.calls.leave(call.epoch)

    async def _serve(self, scope: Scope, receive: Receive, call: _CallRecorder) -> None:
        # Every call reads the switches, and with them what authenticating it will read, in one
        # trip to the database; calls that arrive together with the same header share it.
        plan = self.runtime.authenticator.plan(authorization_of(scope))
        read = partial(_call_facts, controls=self.runtime.controls.current, auth=plan.unit)
        try:
            snapshot, facts = await self.runtime.db.read(read, share=("call", plan.key))
        except Exception as exc:
            # The database is gone: answer here, in the envelope, and keep the connection
            # (Starlette's last-resort handler would re-raise and uvicorn drop it). A passing
            # shortage (no descriptor left) keeps its own answer, a 503 to retry.
            self.controls_unread(exc_info=True)
            error = exc if isinstance(exc, OutOfDescriptors) else InternalError()
            await error_response(scope, error)(scope, call.receive, call.send)
            return
        if snapshot.maintenance:
            await error_response(scope, ServerUnavailable())(scope, call.receive, call.send)
            return
        rule = next((r for r in snapshot.faults if r.matches(scope["method"], scope["path"])), None)
        # Authentication decides on the facts read with the controls (`None`: it reads anew).
        scope.setdefault("state", {})[AUTH_FACTS] = (plan, facts)
        if rule is not None and await self._claimed(rule):
            delay = rule.delay()
            # Facts read before a delay are old by the end of it.
            scope["state"][AUTH_FACTS] = (plan, None if delay else facts)
            if delay and not await self.runtime.calls.sleep(delay, call.epoch):
                # A reset came while the call was held: it belongs to an earlier test, and
                # ends without an answer or a journal entry.
                call.journalled = True
                await drop_connection(receive)
                return
            connection = "drop" if rule.drop else rule.answer
            if connection in ("drop", "reset", "empty"):
                await call.journal(status=0)
                await drop_connection(receive, connection, rule.status or 200)
                return
            if rule.answer == "malformed" or rule.body is not None:
                await fault_answer(rule)(scope, call.receive, call.send)
                return
            if rule.status is not None:
                await error_response(scope, fault_error(rule))(scope, call.receive, call.send)
                return
            if rule.headers:
                call.extra_headers = rule.headers
        # The call's journal entry rides with its next write (`Database.write`).
        token = RIDER.set(call.rider)
        try:
            await self.app(scope, call.receive, call.send)
        except BaseException:
            if not call.journalled:
                await call.journal(status=500)
            raise
        finally:
            RIDER.reset(token)
        if not call.journalled:
            await call.journal(status=0)  # no answer: the client left first

    async def _claimed(self, rule: FaultRule) -> bool:
        try:
            return await self.runtime.db.write(partial(take_fault, rule=rule))
        except Exception:
            logger.exception("cannot claim fault rule %d", rule.id)
            return False


class _CallRecorder:
    """Wraps one call's receive and send to journal it just before its last byte goes out."""

    def __init__(self, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        self.runtime = runtime
        self.scope = scope
        self._receive = receive
        self._send = send
        self.started = runtime.clock()
        self._t0 = time.perf_counter()
        self._body = bytearray()
        self._body_done = False
        self._status = 0
        self.journalled = False
        # Whether a write carries the entry, and the status it wrote there, if it did.
        self._riding = False
        self._followed: int | None = None
        # Counted out by the middleware when the call ends (see inflight.py).
        self.epoch = runtime.calls.enter()
        # Added to the app's answer by a `headers`-only fault rule.
        self.extra_headers: tuple[tuple[str, str], ...] = ()

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            if len(self._body) < _DRAIN_LIMIT:
                self._body += message.get("body", b"")
            self._body_done = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = message["status"]
            if self.extra_headers:
                named = {name.lower().encode() for name, _ in self.extra_headers}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in named]
                added = [(n.lower().encode(), v.encode()) for n, v in self.extra_headers]
                message = {**message, "headers": kept + added}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            # Written before the last byte leaves, so a client that reads the journal right
            # after its call always finds the call there.
            self.journalled = self.journalled or self._followed == self._status
            await self.journal(status=self._status)
        await self._send(message)

    async def journal(self, *, status: int) -> None:
        """Record the call once, if the journal is on and no reset came since it began."""
        # The client got the HTTP protocol's refusal, if it sent one (a body that stalled).
        status = self.scope.get("state", {}).get(ANSWERED_HERE, status)
        stale = self.runtime.calls.stale(self.epoch)
        if self.journalled or self.runtime.settings.journal_size == 0 or stale:
            self.journalled = True
            return
        self.journalled = True
        if not self.runtime.db.available:
            # Waiting out another deadline would only delay an answer that is already an error.
            self.runtime.db.journal_losses()
            return
        if self._unread():
            await self._drain()
        call = self._call(status)
        writer = journal_writer(self.runtime.settings.journal_size)
        entry = journal_entry(call)
        token = RIDER.set(lambda: (writer, lambda _error: entry))
        try:
            await self.runtime.db.write(_nothing)
        except Exception:
            # A journal the database cannot take must not cost the client its answer.
            self.runtime.db.journal_losses(exc_info=True)
        finally:
            RIDER.reset(token)

    def rider(self) -> FollowUp | None:
        """The entry for the call's write, as the call answers if it ends as the write does.

        Only once per call, so the entry rides with the first write that asks: the write the
        endpoint makes, authentication's own ones aside (`dependencies.authenticate`). If the
        answer turns out different (the transaction failed), the last byte records it anew.
        """
        if self._riding or self.journalled or self.runtime.settings.journal_size == 0:
            return None
        if self._unread() or self.runtime.calls.stale(self.epoch):
            return None
        self._riding = True
        entry = journal_entry(self._call(200))

        def make(error: BaseException | None) -> dict[str, Any]:
            # As `call_endpoint` and the middleware answer: a domain error's status, else 500.
            answered = error.status if isinstance(error, DomainError) else 500 if error else 200
            self._followed = answered
            return {**entry, "status": answered, "duration_ms": self._elapsed_ms()}

        return journal_writer(self.runtime.settings.journal_size), make

    def _unread(self) -> bool:
        return not self._body_done and 0 < declared_length(self.scope) <= _DRAIN_LIMIT

    def _elapsed_ms(self) -> float:
        return (time.perf_counter() - self._t0) * 1000

    def _call(self, status: int) -> Call:
        scope = self.scope
        raw = bytes(self._body)
        # The endpoint's parse of the same bytes, when it made one, saves parsing them again.
        parsed = scope.get("state", {}).get(PARSED_BODY)
        body = redact_body(raw, parsed[1]) if parsed and parsed[0] == raw else redact_body(raw)
        return Call(
            started=self.started,
            method=scope["method"],
            path=storable(scope["path"]),
            query=storable(redact_text(scope.get("query_string", b"").decode("latin-1"))),
            headers=redact_headers(scope["headers"]),
            body=body,
            status=status,
            duration_ms=self._elapsed_ms(),
        )

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(1.0):
                while not self._body_done:
                    message = await self.receive()
                    if message["type"] != "http.request":
                        break
        except TimeoutError:
            pass


def _call_facts(
    session: Executor,
    controls: Callable[[Executor], ControlSnapshot],
    auth: Callable[[Executor], Facts] | None,
) -> tuple[ControlSnapshot, Facts | None]:
    """The test controls, and what authenticating the call reads (`auth`), in one unit."""
    return controls(session), auth(session) if auth is not None else None


def _nothing(_connection: Any) -> None:
    """A write of nothing, for an entry whose call made no write to ride with."""
