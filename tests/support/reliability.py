"""Helpers of the reliability tests: checks of the vendor's error envelope.

The server processes and PostgreSQL schemas they run on come from tests/support/servers.py.
"""

from __future__ import annotations

import httpx

ENVELOPE_KEYS = {"errorSource", "message", "messageID", "application"}
# What a leaked stack trace or driver error would put in a body.
LEAK_MARKERS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "sqlite3")


def envelope_problems(response: httpx.Response, status: int | tuple[int, ...]) -> list[str]:
    """What is wrong with `response` as the vendor's error envelope of `status` (empty: ok)."""
    statuses = (status,) if isinstance(status, int) else status
    problems: list[str] = []
    if response.status_code not in statuses:
        problems.append(f"status {response.status_code}, expected {statuses}")
    if response.headers.get("content-type") != "application/json":
        problems.append(f"content-type {response.headers.get('content-type')!r}")
    try:
        body = response.json()
    except ValueError:
        return [*problems, f"body is not JSON: {response.text[:200]!r}"]
    if not isinstance(body, dict) or set(body) != ENVELOPE_KEYS:
        return [*problems, f"body is not the envelope: {response.text[:200]!r}"]
    if body["application"] != "Analytics":
        problems.append(f"application {body['application']!r}")
    if not str(body["message"]).startswith(f"{body['messageID']} "):
        problems.append(f"message {body['message']!r} does not start with its ID")
    raw_path = response.request.url.raw_path.split(b"?", 1)[0].decode("latin-1")
    if body["errorSource"] != raw_path:
        problems.append(f"errorSource {body['errorSource']!r} is not the path {raw_path!r}")
    problems.extend(
        f"{marker!r} leaked in the body" for marker in LEAK_MARKERS if marker in response.text
    )
    return problems
