"""The request journal: what each emulated API call carried, with every secret redacted."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any
from urllib.parse import unquote_plus

from analytics_mock.db.models import JournalRow
from analytics_mock.db.repositories import Executor, JournalRepository
from analytics_mock.formats import CONTROL_CHARACTERS, reject_json_constant, vendor_time

REDACTED = "***"
# A header whose name holds one of these carries a credential, whatever its value looks like.
_SECRET_HEADER_NAME = re.compile(
    r"auth|token|secret|pass|pwd|sso|jwt|cookie|key|credential|sess", re.IGNORECASE
)
# Schemes of `Authorization` a journal may show; any other first word may be the credential.
_SHOWN_SCHEMES = {"basic", "bearer", "digest", "negotiate", "ntlm", "hoba", "mutual"}
# A body member or query/form name that holds a secret, once decoded.
# Narrower than the headers' rule: a member such as `authenticationEnabled` must stay readable.
_SECRET_NAME = re.compile(r"passw|pwd|secret|token|hsso|jwt|api[-_]?key", re.IGNORECASE)
# Text that is not valid JSON (a refused body, a query string, a form) is read as tokens, in
# one pass: a quoted string, a bare name, or one other character. A quote with no closing one
# is a character of its own, so that it cannot hide the secrets after it; once one quote of a
# kind is found open, every later one of that kind is too (the scan would read the same rest).
# A name followed by `:` or `=` whose decoded form is a secret's has its value masked.
_STRING = {
    '"': re.compile(r'"(?:[^"\\]|\\.)*(")?', re.DOTALL),
    "'": re.compile(r"'(?:[^'\\]|\\.)*(')?", re.DOTALL),
}
_BARE = re.compile(r"""[^\s"'&=:;,{}]+""")
# Between a name and its value: a colon, equals sign or semicolon, with whatever a sloppy or
# hostile client puts around it (spaces, control and invisible characters, a // comment), but
# no comma, ampersand, quote or word: those would take a value ("x": "password", "y") for a name.
_SEPARATOR = re.compile(r"""(?:[^\w"'&,]|//[^\n]*)*?[:=;](?:[^\w"'&,]|//[^\n]*)*""")
# A comma or bare white space typed for a JSON colon (`{"password" , "S"}`, `{"password" "S"}`):
# after a quoted name, what follows is masked unless it is a name itself (a list in a query,
# `a=password,b`, stays as it is).
_LOOSE = re.compile(r"""\s*,\s*|\s+(?=["'])""")
_NAME_END = re.compile(r"\s*[:=]")
# `=` or `:` percent-encoded, once or more (`%3D`, `%253D`).
_ENCODED_SEPARATOR = re.compile(r"%(?:25)*3[dDaA]")
# Not part of a name as a reader sees it: white space, control and invisible characters.
_UNSEEN = re.compile(rf"[\s{CONTROL_CHARACTERS}\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_VALUE = re.compile(r"""("(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?)|[^&\s,;}\]]*""", re.DOTALL)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_MAX_BODY = 64 * 1024
# Deeper documents are redacted as text: the walk and `json.dumps` recurse, and a body nested
# near the interpreter's recursion limit must never cost the client its answer.
_MAX_DEPTH = 64


def storable(text: str) -> str:
    """`text` as any database stores it: no NUL, no lone surrogate (both shown escaped)."""
    if text.isascii() and "\x00" not in text:  # the usual case: nothing to escape
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


@lru_cache(maxsize=256)
def _header_name(raw: bytes) -> tuple[str, bool]:
    """A header's lower-case name, and whether it carries a credential (clients repeat them)."""
    name = raw.decode("latin-1").lower()
    return name, bool(_SECRET_HEADER_NAME.search(name))


def redact_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers by lower-case name; credentials keep at most a known scheme's name."""
    shown: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name, secret = _header_name(raw_name)
        value = raw_value.decode("latin-1")
        if secret:
            words = value.split(None, 1)
            scheme = words[0] if len(words) == 2 and words[0].lower() in _SHOWN_SCHEMES else ""
            value = f"{scheme} {REDACTED}".strip()
        value = storable(value)
        shown[name] = f"{shown[name]}, {value}" if name in shown else value
    return shown


def _unescape(text: str) -> str:
    """JSON string escapes decoded leniently: one that is not valid stays as it is."""

    def one(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape[0] == "u" and len(escape) == 5:
            return chr(int(escape[1:], 16))
        return _SIMPLE_ESCAPES.get(escape, escape)

    return _ESCAPE.sub(one, text)


@lru_cache(maxsize=1024)
def _secret_name(raw: str) -> bool:
    """Whether a name, as written in a body or query, names a secret once decoded.

    Quotes, then JSON escapes and percent-encoding (each up to three times over), then white
    space, control and invisible characters (`pass word`, `pass\\x00word`), then every part of
    a bracketed form (`user[password]`) are looked through.
    """
    if raw.isalnum():  # the usual name: nothing to decode
        return bool(_SECRET_NAME.search(raw))
    name = raw
    if name[:1] in {'"', "'"}:
        name = name[1:-1] if len(name) > 1 and name[-1] == name[0] else name[1:]
    for _ in range(3):
        decoded = unquote_plus(_unescape(name))
        if decoded == name:
            break
        name = decoded
    return bool(_SECRET_NAME.search(_UNSEEN.sub("", name)))


class _TooDeep(Exception):
    """A document nested past `_MAX_DEPTH`."""


def _redact_json(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise _TooDeep
    if isinstance(value, dict):
        return {
            key: REDACTED if _secret_name(key) else _redact_json(item, depth + 1)
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
        # A number past a float's range (1e400) parsed as infinity, which JSON cannot write:
        # such a body is redacted as the text it came as.
        redacted = json.dumps(_redact_json(document), ensure_ascii=False, allow_nan=False)
        return storable(redacted[:_MAX_BODY])
    except (ValueError, RecursionError, _TooDeep):
        return storable(redact_text(raw[:_MAX_BODY].decode("utf-8", errors="replace")))


def _token(text: str, position: int, open_quotes: set[str]) -> tuple[str, bool]:
    """The token at `position` and whether it may be a name."""
    char = text[position]
    if char in _STRING and char not in open_quotes:
        string = _STRING[char].match(text, position)
        assert string is not None  # it starts with the quote
        if string.group(1) is not None:
            return string.group(), True
        open_quotes.add(char)
    if (bare := _BARE.match(text, position)) is not None:
        return bare.group(), True
    return char, False


def redact_text(text: str) -> str:
    """`text` with the value after every secret's name masked, its quoting kept."""
    shown: list[str] = []
    open_quotes: set[str] = set()
    position, end = 0, len(text)
    while position < end:
        token, named = _token(text, position, open_quotes)
        position += len(token)
        shown.append(token)
        if not named:
            continue
        # `password%3Dhunter2`: a name and its value in one token, the separator encoded.
        inner = _ENCODED_SEPARATOR.search(token) if "%" in token else None
        if inner is not None and _secret_name(token[: inner.start()]):
            shown[-1] = token[: inner.end()] + REDACTED
            continue
        separator = _SEPARATOR.match(text, position)
        if loose := separator is None and token[:1] in _STRING:
            separator = _LOOSE.match(text, position)
        if separator is None or not _secret_name(token):
            continue
        value = _VALUE.match(text, separator.end())
        assert value is not None  # it may match nothing
        if loose and _NAME_END.match(text, value.end()):
            continue  # `"x": "password", "y": 1`: the comma ends a value, "y" is a name
        quote = (value.group(1) or "")[:1]
        shown.append(f"{separator.group()}{quote}{REDACTED}{quote}")
        position = value.end()
    return "".join(shown)


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


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON has no way to show it again
        raise ValueError(text)
    return value


# A JSON escape of a UTF-16 surrogate: paired (an emoji) or lone.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _parsed(body: str | None) -> Any:
    # The stored body is already redacted: a JSON body was stored as the JSON of its redaction.
    if not body:
        return None
    try:
        document = json.loads(body, parse_float=_finite, parse_constant=reject_json_constant)
        if _SURROGATE_ESCAPE.search(body):
            # A lone surrogate the client escaped ("\ud800") parses, but no UTF-8 answer can
            # hold it: such a body is shown as its text only.
            json.dumps(document, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None
    return document


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
