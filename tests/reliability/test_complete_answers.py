"""Every answer is complete: whatever a body's nesting, the client reads the whole envelope.

A real server (uvicorn) journals every call under /Analytics/, and the journal redacts the
body it records. Bodies nested from 1 level to well past the JSON parser's own limit must each
get the complete response its status line announced, and the server log stays free of
tracebacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support.helpers import ADMIN, OBJECT_PATH
from tests.support.reliability import StartServer

pytestmark = pytest.mark.live

# Past the interpreter's recursion limit, hence past the parser's.
DEEPEST = sys.getrecursionlimit() + 200


def nested(depth: int) -> bytes:
    """A JSON object `depth` levels deep, with a password member at the bottom."""
    return b'{"a":' * depth + b'"x","password":"hunter2"' + b"}" * depth


def test_bodies_of_every_nesting_depth_get_whole_answers(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'deep.db'}").wait_ready()
    headers = {**ADMIN, "Content-Type": "application/json"}
    statuses: dict[str, set[int]] = {"authenticated": set(), "anonymous": set()}
    with server.client() as http:
        for depth in range(1, DEEPEST + 1):
            for kind, sent in (("authenticated", headers), ("anonymous", {})):
                # httpx raises when fewer body bytes arrive than Content-Length announced.
                response = http.put(OBJECT_PATH, content=nested(depth), headers=sent)
                error = response.json()
                assert error["application"] == "Analytics", (depth, kind, response.text)
                assert error["message"].startswith(error["messageID"]), (depth, kind)
                statuses[kind].add(response.status_code)
        assert statuses == {"authenticated": {400}, "anonymous": {401}}
        journal = http.get("/_mock/requests").json()["requests"]
    assert journal, "the calls were journalled"
    assert "hunter2" not in json.dumps(journal)
    log = server.stderr()
    assert "Traceback" not in log
    assert "RecursionError" not in log
