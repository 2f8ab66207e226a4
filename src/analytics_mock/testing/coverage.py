"""What a test suite's calls exercised of the emulated API, and what they never did.

`CoverageRecorder.wrap(app)` is an ASGI middleware around the emulator's app: for each call to
`/Analytics/` it records the operation (method and route), the status and, for an error, the
vendor's message ID. `report` sets that against what the API documents: the statuses each
operation's OpenAPI entry lists, and the message IDs of the error catalogue.
"""

# Imported by the pytest plugin's coverage option only when a fixture builds an emulator.
# ruff: noqa: PLC0415

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/Analytics/"
# An error envelope is small; a body past this is not read for its message ID.
_MAX_ENVELOPE = 64 * 1024

Seen = tuple[str, int, str | None]  # operation, status, message ID


class CoverageRecorder:
    """Collects (operation, status, message ID) of every emulated call, across emulators."""

    def __init__(self) -> None:
        self.seen: set[Seen] = set()
        # Operation -> the statuses its OpenAPI entry documents.
        self.documented: dict[str, set[int]] = {}

    def wrap(self, app: Any) -> ASGIApp:
        """`app` with every emulated call recorded; learns the documented statuses from it."""
        operations = documented_operations(app)
        self.documented.update(operations)
        routes: list[tuple[str, re.Pattern[str], str]] = []
        for name in operations:
            method, path = name.split(" ", 1)
            routes.append((method, _template(path), name))

        async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
                await app(scope, receive, send)
                return
            operation = next(
                (
                    name
                    for method, pattern, name in routes
                    if method == scope["method"] and pattern.match(scope["path"])
                ),
                f"{scope['method']} (no such operation)",
            )
            status = 0
            body = bytearray()

            async def watch(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif message["type"] == "http.response.body" and len(body) < _MAX_ENVELOPE:
                    body.extend(message.get("body", b""))
                await send(message)

            try:
                await app(scope, receive, watch)
            finally:
                self.seen.add(
                    (operation, status, message_id(bytes(body)) if status >= 400 else None)
                )

        return recorded

    def export(self) -> dict[str, Any]:
        """As JSON, to send from a pytest-xdist worker to the controller."""
        return {
            "seen": sorted([list(item) for item in self.seen], key=repr),
            "documented": {name: sorted(codes) for name, codes in self.documented.items()},
        }

    def merge(self, exported: dict[str, Any]) -> None:
        """Add what another process recorded."""
        self.seen.update((op, status, mid) for op, status, mid in exported["seen"])
        for name, codes in exported["documented"].items():
            self.documented.setdefault(name, set()).update(codes)


def _template(path: str) -> re.Pattern[str]:
    """The regular expression of an OpenAPI path template: a `{name}` is one path segment."""
    parts = re.split(r"\{[^}]+\}", path)
    return re.compile("[^/]+".join(re.escape(part) for part in parts) + "$")


def message_id(body: bytes) -> str | None:
    """The vendor envelope's `messageID`, if the body is one."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    value = document.get("messageID") if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


def documented_operations(app: Any) -> dict[str, set[int]]:
    """Each emulated operation ("PUT /Analytics/v1/...") and the statuses its OpenAPI lists."""
    operations: dict[str, set[int]] = {}
    for path, entry in app.openapi().get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for method, spec in entry.items():
            if method.upper() == "HEAD" or not isinstance(spec, dict):
                continue
            codes = {int(code) for code in spec.get("responses", {}) if code.isdigit()}
            operations[f"{method.upper()} {path}"] = codes
    return operations


def all_message_ids() -> list[str]:
    """Every message ID of the error catalogue."""
    from analytics_mock.errors import CATALOGUE

    return sorted({kind.message_id for kind in CATALOGUE})


def report(recorder: CoverageRecorder, message_ids: Iterable[str] | None = None) -> list[str]:
    """The coverage report, one line a list entry."""
    ids = sorted(message_ids if message_ids is not None else all_message_ids())
    seen_statuses: dict[str, set[int]] = {}
    for operation, status, _ in recorder.seen:
        seen_statuses.setdefault(operation, set()).add(status)
    seen_ids = {mid for _, _, mid in recorder.seen if mid}
    operations = sorted(set(recorder.documented) | set(seen_statuses))
    pairs = sum(len(codes) for codes in recorder.documented.values())
    covered = sum(
        len(codes & seen_statuses.get(name, set())) for name, codes in recorder.documented.items()
    )
    lines = [
        f"{covered} of {pairs} documented (operation, status) pairs seen; "
        f"{len(seen_ids & set(ids))} of {len(ids)} message IDs seen"
    ]
    for name in operations:
        seen = seen_statuses.get(name, set())
        never = recorder.documented.get(name, set()) - seen
        shown = ", ".join(str(code) for code in sorted(seen)) or "nothing"
        line = f"  {name}: saw {shown}"
        if never:
            line += f"; never {', '.join(str(code) for code in sorted(never))}"
        lines.append(line)
    missing = [mid for mid in ids if mid not in seen_ids]
    if missing:
        lines.append(f"  message IDs never seen: {', '.join(missing)}")
    return lines
