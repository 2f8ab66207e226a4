"""The edge guard around a stand-in app, called in process, and checks of what it refuses."""

from __future__ import annotations

import httpx
from starlette.types import Receive, Scope, Send

from analytics_mock.api.edge_guard import EdgeGuard, EdgePolicy

TOKEN = "s3cret-token-for-tests"


async def stand_in(scope: Scope, receive: Receive, send: Send) -> None:
    """The app behind the guard: 200 "reached" for anything it is given."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"reached"})


async def call(
    policy: EdgePolicy, path: str = "/Analytics/v1/objects/EmailServerSettings", **headers: str
) -> httpx.Response:
    transport = httpx.ASGITransport(app=EdgeGuard(stand_in, policy))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:22015") as http:
        return await http.get(path, headers={k.replace("_", "-"): v for k, v in headers.items()})


def assert_refused(response: httpx.Response, status: int, message_id: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["messageID"] == message_id
    assert body["message"].startswith(message_id + " ")
    assert body["application"] == "Analytics"
    assert response.headers["x-content-type-options"] == "nosniff"
