"""Request dependencies, in the order the vendor's checks apply: 406, 401, 403, 415, 400."""

from __future__ import annotations

import json
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.types import Scope

from analytics_mock.api.middleware import header_of, listed_values, whole_body
from analytics_mock.config_files import error_location
from analytics_mock.db.runner import RIDER
from analytics_mock.errors import (
    InvalidBody,
    InvalidMember,
    MalformedBody,
    NotAcceptable,
    UnknownMember,
    UnsupportedMediaType,
)
from analytics_mock.formats import json_integer, reject_json_constant
from analytics_mock.runtime import Runtime
from analytics_mock.services.auth import ADMIN, Principal

ModelT = TypeVar("ModelT", bound=BaseModel)


# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` in the thread pool,
# a hop that costs more than their work.
async def get_runtime(request: Request) -> Runtime:
    """The runtime of the app serving this request."""
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _media_type(value: str) -> tuple[str, float]:
    media, *params = value.split(";")
    quality = 1.0
    for param in params:
        key, _, raw = param.partition("=")
        if key.strip().lower() == "q":
            try:
                quality = float(raw.strip())
            except ValueError:
                quality = 0.0
    return media.strip().lower(), quality


def accepts_json(accept: str | None) -> bool:
    """Whether an `Accept` header admits application/json (absent means `*/*`)."""
    if accept is None or not accept.strip():
        return True
    ranges = dict(_media_type(part) for part in accept.split(",") if part.strip())
    # The most specific range that names JSON decides, so `application/json;q=0` excludes it.
    for candidate in ("application/json", "application/*", "*/*"):
        if candidate in ranges:
            return ranges[candidate] > 0
    return False


def runtime_of(request: Request) -> Runtime:
    """The runtime of the app serving this request."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def authorization_of(scope: Scope) -> str | None:
    """The request's one `Authorization` header; None when it has none or several."""
    headers = [value for name, value in scope["headers"] if name == b"authorization"]
    # Two credentials are ambiguous: refuse rather than pick one.
    return headers[0].decode("latin-1") if len(headers) == 1 else None


async def authenticate(request: Request) -> Principal:
    """401 unless the request carries valid Basic credentials or a live HSSO token."""
    runtime = runtime_of(request)
    header = authorization_of(request.scope)
    # The facts the middleware read with the test controls, for this same header.
    read = request.scope.get("state", {}).get(AUTH_FACTS)
    # Authentication's own writes are not the call's: its journal entry rides with a later one.
    token = RIDER.set(None)
    try:
        principal = await runtime.authenticator.authenticate(
            runtime.db, header, runtime.clock(), read=read
        )
    finally:
        RIDER.reset(token)
    # Picked up by the middleware and the error renderer: every authenticated response
    # hands the session token back.
    request.scope.setdefault("state", {})["hsso_token"] = principal.token
    return principal


# Called first thing by each emulated endpoint rather than declared as a dependency: FastAPI's
# resolution of a dependency costs more per request than the checks it would run.
async def require_admin(request: Request) -> Principal:
    """406 unless the client accepts JSON, then 401 unless authenticated, 403 unless Admin."""
    if not accepts_json(header_of(request.scope, b"accept")):
        raise NotAcceptable("The Accept header must admit application/json.")
    principal = await authenticate(request)
    principal.require(ADMIN)
    return principal


def require_json_content_type(request: Request) -> None:
    """415 unless the Content-Type names application/json (parameters allowed), not encoded."""
    value = header_of(request.scope, b"content-type")
    if value is None or _media_type(value)[0] != "application/json":
        raise UnsupportedMediaType("The Content-Type of the request must be application/json.")
    # A gzip body read as plain JSON would be a misleading 400 (RFC 9110 says 415).
    codings = listed_values(request.scope, b"content-encoding")
    if any(coding not in ("", "identity") for coding in codings):
        raise UnsupportedMediaType("The request body must not have a Content-Encoding.")


# Where `read_json` leaves the body it parsed, with its bytes, for the journal to redact.
PARSED_BODY = "analytics_mock.parsed_body"
# Where the middleware leaves the authentication facts it read with the test controls: the
# plan for the request's header and the facts its unit read (`Authenticator.authenticate`).
AUTH_FACTS = "analytics_mock.auth_facts"


async def read_json(request: Request) -> object:
    """The parsed JSON body; call it only once the caller is known to be allowed."""
    require_json_content_type(request)
    raw = await whole_body(request.receive)
    document = parse_json(raw)
    request.scope.setdefault("state", {})[PARSED_BODY] = (raw, document)
    return document


def parse_json(raw: bytes) -> object:
    """A JSON document as the vendor's Java stack reads it; `generic error` otherwise."""
    if not raw.strip():
        raise MalformedBody("The request body is empty.")
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=reject_json_constant, parse_int=json_integer)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedBody("The request body is not valid JSON.") from None


def validate_body(model: type[ModelT], document: object, *, what: str) -> ModelT:
    """`document` as `model`, or the 400 that names the first offending member."""
    if not isinstance(document, dict):
        raise InvalidBody(f"The request body must be a JSON object ({what}).")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        member = error_location(first)
        if first["type"] == "extra_forbidden":
            raise UnknownMember(f'The member "{member}" is not a member of {what}.') from None
        if first["type"] == "member_invalid":
            raise InvalidMember(f'The member "{member}" {first["msg"]}.') from None
        raise InvalidBody(f'The member "{member}" is invalid: {first["msg"]}.') from None
