"""The request journal: what each emulated API call carried, with every secret redacted."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from analytics_mock.db.models import JournalRow
from analytics_mock.db.repositories import Executor, JournalRepository
from analytics_mock.formats import vendor_time

REDACTED = "***"
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie"}
# For text that is not valid JSON (a refused body, a query string): whatever follows a
# password name and `:` or `=`, quoted either way (even unterminated) or bare.
_PASSWORD_TEXT = re.compile(
    r"""((?<![A-Za-z0-9_])password["']?\s*[:=]\s*)("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^&\s,;}\]]*)""",
    re.IGNORECASE,
)
_MAX_BODY = 64 * 1024
# Deeper documents are redacted as text: the walk and `json.dumps` recurse, and a body nested
# near the interpreter's recursion limit must never cost the client its answer.
_MAX_DEPTH = 64


def storable(text: str) -> str:
    """`text` as any database stores it: no NUL, no lone surrogate (both shown escaped)."""
    if text.isascii() and "\x00" not in text:  # the usual case: nothing to escape
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def redact_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers by lower-case name; credentials keep only their scheme."""
    shown: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in _SECRET_HEADERS:
            scheme = value.strip().split(" ", 1)[0] if name != "cookie" else ""
            value = f"{scheme} {REDACTED}".strip()
        value = storable(value)
        shown[name] = f"{shown[name]}, {value}" if name in shown else value
    return shown


class _TooDeep(Exception):
    """A document nested past `_MAX_DEPTH`."""


def _redact_json(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, dict):
        return {
            key: REDACTED if key.lower() == "password" else _redact_json(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(item, depth + 1) for item in value]
    return value


_UNPARSED = object()


def redact_body(raw: bytes, document: Any = _UNPARSED) -> str | None:
    """The body as text with every `password` member masked; None when there was none.

    `document` is `raw` already parsed as JSON, when the caller has it.
    """
    if not raw:
        return None
    try:
        if document is _UNPARSED:
            document = json.loads(raw)
        return storable(json.dumps(_redact_json(document), ensure_ascii=False)[:_MAX_BODY])
    except (ValueError, RecursionError, _TooDeep):
        return storable(redact_text(raw[:_MAX_BODY].decode("utf-8", errors="replace")))


def _mask(match: re.Match[str]) -> str:
    quote = match.group(2)[:1] if match.group(2)[:1] in {'"', "'"} else ""
    return f"{match.group(1)}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """`text` with the value after every password name masked, its quoting kept."""
    return _PASSWORD_TEXT.sub(_mask, text)


@dataclass(frozen=True)
class Call:
    """One finished call, ready to be journalled."""

    started: float
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str | None
    status: int
    duration_ms: float


def journal_entry(call: Call) -> dict[str, Any]:
    """The journal row's column values for `call`."""
    return {
        "created_at": call.started,
        "method": call.method,
        "path": call.path,
        "query": call.query,
        "headers": json.dumps(call.headers),
        "body": call.body,
        "status": call.status,
        "duration_ms": call.duration_ms,
    }


@cache
def journal_writer(keep: int) -> Callable[[Executor, list[dict[str, Any]]], None]:
    """Writes a group of journal entries, keeping the newest `keep` (one function per `keep`)."""

    def write(session: Executor, entries: list[dict[str, Any]]) -> None:
        JournalRepository(session).add_all(entries, keep)

    return write


def _parsed(body: str | None) -> Any:
    # The stored body is already redacted: a JSON body was stored as the JSON of its redaction.
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def journal_body(row: JournalRow) -> dict[str, Any]:
    """A journalled call as the control API shows it."""
    return {
        "id": row.id,
        "time": vendor_time(row.created_at),
        "method": row.method,
        "path": row.path,
        "query": row.query,
        "headers": json.loads(row.headers),
        "body": row.body,
        "json": _parsed(row.body),
        "status": row.status,
        "durationMs": round(row.duration_ms, 3),
    }
