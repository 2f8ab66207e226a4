"""Routes of `/Analytics/v1/objects/EmailServerSettings`: thin, the rules live in the service."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from analytics_mock.api.dependencies import read_json, require_admin, runtime_of, validate_body
from analytics_mock.api.openapi import json_request_body
from analytics_mock.api.responses import error_responses
from analytics_mock.api.routes import DirectRoute
from analytics_mock.db.repositories import Executor
from analytics_mock.errors import InvalidParameter
from analytics_mock.formats import MAX_INT
from analytics_mock.query.filter_parser import QuerySyntaxError, parse_filter
from analytics_mock.query.sql import OrderBySyntaxError, parse_order_by
from analytics_mock.schemas.email_settings import (
    EmailSetting,
    EmailSettingCollection,
    EmailSettingUpdate,
)
from analytics_mock.services import email_settings as service

router = APIRouter(prefix="/Analytics/v1", tags=["EmailServerSettings"], route_class=DirectRoute)


def _integer(minimum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": MAX_INT}


def _integer_parameter(name: str, minimum: int) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": _integer(minimum),
        "description": f"Integer from {minimum} to {MAX_INT}.",
    }


_END = "(?![\\s\\S])"
_STRING_ATTRIBUTE = "(?:instanceID|hostname|userId|senderAddress|secureConnection)"
_ATTRIBUTE = f"(?:{_STRING_ATTRIBUTE}|authenticationEnabled|portNumber)"
_TEXT = "'(?:[^'\\x00]|'')*'"
_NUMBER = "-?[0-9]{1,18}"
_BOOLEAN = "(?:true|false)"
_IN = "(?: not)? in "


def _listed(value: str) -> str:
    return f"\\[{value}(?:,{value})*\\]"


_CONDITION = (
    "(?:"
    + "|".join(
        (
            f"{_STRING_ATTRIBUTE} (?:eq|ne|gt|lt|ge|le|starts|ends) {_TEXT}",
            f"portNumber (?:eq|ne|gt|lt|ge|le) {_NUMBER}",
            f"authenticationEnabled (?:eq|ne) {_BOOLEAN}",
            f"{_STRING_ATTRIBUTE}{_IN}{_listed(_TEXT)}",
            f"portNumber{_IN}{_listed(_NUMBER)}",
            f"authenticationEnabled{_IN}{_listed(_BOOLEAN)}",
        )
    )
    + ")"
)
# The patterns are the plainest form of each grammar, which every client can write; the server
# also takes more spacing, upper-case keywords, symbols for operators and parentheses.
QUERY_PATTERN = f"^{_CONDITION}(?: (?:and|or) {_CONDITION})*{_END}"
ORDER_BY_PATTERN = (
    f"^(?![\\s\\S]*\\b({_ATTRIBUTE})\\b[\\s\\S]*\\b\\1\\b)"
    f"{_ATTRIBUTE}(?: (?:ASC|DESC))?(?:,{_ATTRIBUTE}(?: (?:ASC|DESC))?)*{_END}"
)

# Documented here rather than declared in the signature: FastAPI would validate each declared
# parameter on every call, work that `list_window` does anyway, with the vendor's messages.
LIST_PARAMETERS = [
    _integer_parameter("$offset", 0),
    _integer_parameter("$count", 1),
    {
        # page and pageSize come together or not at all; an object parameter, exploded into
        # the query, is how OpenAPI says so.
        "name": "paging",
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "schema": {
            "type": "object",
            "properties": {"page": _integer(1), "pageSize": _integer(1)},
            "required": ["page", "pageSize"],
        },
        "description": (
            "`page` and `pageSize` (each 1 to 2147483647), given together; they take priority "
            "over `$offset` and `$count`."
        ),
    },
    {
        "name": "$order-by",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": 4096, "pattern": ORDER_BY_PATTERN},
        "description": "attr [ASC|DESC], comma separated, each attribute once.",
    },
    {
        "name": "$query",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": 4096, "pattern": QUERY_PATTERN},
        "description": (
            "The vendor's filter grammar on the 7 attributes: `and`/`or`, parentheses, "
            "`eq = ne <> != gt > lt < ge >= le <= starts ends`, `in [..]`, `not in [..]`, "
            "strings in single quotes with '' as escape, numbers, true/false; keywords in any "
            "case. The pattern gives the plainest form of it."
        ),
    },
]


def _parse_int(request: Request, name: str, minimum: int, default: int | None) -> int | None:
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise InvalidParameter(f'The query parameter "{name}" is given more than once.')
    value = values[0]
    if not (value.isascii() and value.isdigit()) or not minimum <= int(value) <= MAX_INT:
        raise InvalidParameter(
            f'The query parameter "{name}" must be an integer from {minimum} to {MAX_INT}.'
        )
    return int(value)


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InvalidParameter(f'The query parameter "{name}" is given more than once.')
    return values[0] if values else None


# A call without a query (the common case) needs no parsing of one.
_DEFAULT_WINDOW = service.ListWindow(None, (), 0, 100)


def list_window(request: Request) -> service.ListWindow:
    """The list parameters, each checked with a 400 that names it, read from the raw query."""
    if not request.scope.get("query_string"):
        return _DEFAULT_WINDOW
    page = _parse_int(request, "page", 1, None)
    page_size = _parse_int(request, "pageSize", 1, None)
    offset = _parse_int(request, "$offset", 0, 0)
    count = _parse_int(request, "$count", 1, 100)
    assert offset is not None and count is not None
    if (page is None) != (page_size is None):
        missing = "pageSize" if page_size is None else "page"
        raise InvalidParameter(
            f'The query parameter "{missing}" is required with "page" and "pageSize".'
        )
    query_text = _single(request, "$query")
    order_text = _single(request, "$order-by")
    for name, text in (("$query", query_text), ("$order-by", order_text)):
        if text is not None and "\x00" in text:
            raise InvalidParameter(f'The query parameter "{name}" must not contain NUL.')
    try:
        where = parse_filter(query_text) if query_text is not None else None
    except QuerySyntaxError as exc:
        raise InvalidParameter(f'The query parameter "$query" is invalid: {exc}.') from None
    try:
        order = tuple(parse_order_by(order_text)) if order_text is not None else ()
    except OrderBySyntaxError as exc:
        raise InvalidParameter(f'The query parameter "$order-by" is invalid: {exc}.') from None
    if page is not None and page_size is not None:
        return service.ListWindow(where, order, page_size * (page - 1), page_size, page)
    return service.ListWindow(where, order, offset, count)


@router.get(
    "/objects/EmailServerSettings",
    summary="List the mail server settings",
    operation_id="listEmailServerSettings",
    response_class=JSONResponse,
    responses={
        200: {"model": EmailSettingCollection},
        **error_responses(400, 401, 403, 406, 412),
    },
    openapi_extra={"parameters": LIST_PARAMETERS},
)
async def list_email_settings(request: Request) -> Response:
    """GET the Collections envelope of EmailSetting objects."""
    await require_admin(request)
    window = list_window(request)
    runtime = runtime_of(request)
    list_unit = partial(_rendered_list, dialect=runtime.db.dialect, window=window)
    # The same query string is the same window: concurrent calls share one read of it, and
    # one rendering of its body.
    shared = ("list", request.scope.get("query_string", b""))
    body = await runtime.db.read(list_unit, share=shared, answers=True)
    return Response(body, media_type="application/json")


def _rendered_list(connection: Executor, dialect: str, window: service.ListWindow) -> bytes:
    body = service.list_settings(connection, dialect, window)
    # As JSONResponse renders.
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@router.put(
    "/objects/EmailServerSettings/{id}",
    summary="Update the mail server settings",
    operation_id="updateEmailServerSetting",
    response_class=JSONResponse,
    responses={
        200: {"model": EmailSetting},
        **error_responses(400, 401, 403, 404, 406, 412, 413, 415),
    },
    openapi_extra=json_request_body(EmailSettingUpdate),
)
async def update_email_setting(request: Request, id: str) -> JSONResponse:
    """PUT a partial update of one EmailSetting object."""
    await require_admin(request)
    runtime = runtime_of(request)
    patch = validate_body(EmailSettingUpdate, await read_json(request), what="EmailSetting")
    update = partial(service.update_setting, box=runtime.box, instance_id=id, patch=patch)
    return JSONResponse(await runtime.db.write(update))
