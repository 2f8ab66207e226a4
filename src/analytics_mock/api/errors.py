"""One place that turns every error, ours or the framework's, into the vendor's envelope."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from analytics_mock.errors import (
    DomainError,
    InternalError,
    InvalidParameter,
    MethodNotAllowed,
    ResourceNotFound,
)

logger = logging.getLogger("analytics_mock.api")

# The vendor's examples show these on every response.
COMMON_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-cache"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-XSS-Protection", "1; mode=block"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "frame-ancestors 'self'"),
)
# The same, as ASGI and uvicorn carry headers: lower-case names, bytes.
COMMON_RAW_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.lower().encode(), value.encode()) for name, value in COMMON_HEADERS
)


def error_source(scope: Scope) -> str:
    """The request's path as the client sent it (still percent-encoded)."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes | bytearray) and raw:
        return bytes(raw).split(b"?", 1)[0].decode("latin-1")
    return str(scope.get("path", ""))


def envelope(source: str, error: DomainError) -> bytes:
    """The vendor's error body for `error`, raised by a request for `source`."""
    body = {
        "errorSource": source,
        "message": f"{error.message_id} {error.text}",
        "messageID": error.message_id,
        "application": "Analytics",
    }
    # ASCII escapes: a member name echoed from the request may hold a lone surrogate.
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode()


def error_response(scope: Scope, error: DomainError) -> Response:
    """The vendor's envelope for `error`, with the common headers already set."""
    headers = dict(COMMON_HEADERS)
    headers.update(error.headers)
    token = scope.get("state", {}).get("hsso_token")
    if token and "WWW-Authenticate" not in error.headers:
        headers["WWW-Authenticate"] = f"HSSO {token}"
    return Response(
        envelope(error_source(scope), error),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: Starlette, scope: Scope) -> str:
    """Every method that some route takes at this request's path, as `Allow` lists them."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**scope, "method": method})[0] is Match.FULL
            for route in app.router.routes
        )
    ]
    return ", ".join(allowed)


def _from_http_exception(exc: StarletteHTTPException, request: Request) -> DomainError:
    if exc.status_code == 404:
        return ResourceNotFound("The requested resource was not found.")
    if exc.status_code == 405:
        # Starlette names the methods of the first route at the path only; a resource such as
        # /_mock/faults has one route per method.
        allow = allowed_methods(request.app, request.scope) or (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(
            "The method is not allowed for this resource.", headers={"Allow": allow}
        )
    # Anything else the framework raises has no vendor kind of its own.
    return DomainError(str(exc.detail), status=exc.status_code)


def _from_validation_error(exc: RequestValidationError) -> DomainError:
    first = exc.errors()[0]
    location = [str(part) for part in first.get("loc", ())]
    where = location[0] if location else "request"
    name = location[1] if len(location) > 1 else ""
    return InvalidParameter(f'The {where} parameter "{name}" is invalid: {first.get("msg")}.')


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception the app can raise through `error_response`."""

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return error_response(request.scope, exc)

    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(request.scope, _from_http_exception(exc, request))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(request.scope, _from_validation_error(exc))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return error_response(request.scope, InternalError())

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
