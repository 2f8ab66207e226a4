"""The emulated endpoints are called straight from the app's middleware; the rest by FastAPI."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.routing import Router

from analytics_mock.api import email_settings, test_mail
from analytics_mock.api.routes import DirectRoutes
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH

pytestmark = pytest.mark.anyio

ACTION = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"
ROUTES = DirectRoutes([*email_settings.router.routes, *test_mail.router.routes])


def scope(method: str, path: str, **extra: Any) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, **extra}


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "params"),
    [
        ("GET", SETTINGS_PATH, email_settings.list_email_settings, {}),
        (
            "PUT",
            SETTINGS_PATH + "/mailServerSetting#0",
            email_settings.update_email_setting,
            {"id": "mailServerSetting#0"},
        ),
        ("GET", ACTION, test_mail.prepare_test_mail, {}),
        ("POST", ACTION + "/invoke", test_mail.invoke_test_mail, {}),
    ],
)
def test_each_emulated_endpoint_is_matched_with_its_parameters(
    method: str, path: str, endpoint: object, params: dict[str, str]
) -> None:
    assert ROUTES.match(scope(method, path)) == (endpoint, params)


@pytest.mark.parametrize(
    ("method", "path", "extra"),
    [
        ("HEAD", SETTINGS_PATH, {}),  # FastAPI answers it 405: the framework's way
        ("POST", SETTINGS_PATH, {}),
        ("GET", SETTINGS_PATH + "/", {}),
        ("PUT", SETTINGS_PATH + "/a/b", {}),
        ("PUT", SETTINGS_PATH + "/", {}),
        ("GET", "/Analytics/v1/objects/Other", {}),
        ("GET", "/_mock/state", {}),
        ("GET", SETTINGS_PATH, {"root_path": "/proxy"}),
    ],
)
def test_anything_else_is_left_to_the_framework(
    method: str, path: str, extra: dict[str, Any]
) -> None:
    assert ROUTES.match(scope(method, path, **extra)) is None


async def test_only_unmatched_requests_reach_the_framework_router(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    routed: list[str] = []
    original = Router.__call__

    async def spy(self: Router, scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", spy)
    put = await client.put(OBJECT_PATH, json={"portNumber": 2525}, headers=ADMIN)
    listed = await client.get(SETTINGS_PATH, headers=ADMIN)
    assert (put.status_code, listed.status_code, routed) == (200, 200, [])
    refused = await client.delete(OBJECT_PATH, headers=ADMIN)
    assert refused.status_code == 405
    assert refused.json()["messageID"] == "KNAQ20501-E"
    assert routed == ["/Analytics/v1/objects/EmailServerSettings/mailServerSetting#0"]


async def test_direct_calls_keep_the_middleware(client: httpx.AsyncClient) -> None:
    response = await client.put(OBJECT_PATH, json={"portNumber": 2526}, headers=ADMIN)
    # The vendor's headers, the session token and the journal all come from the middleware.
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["www-authenticate"].startswith("HSSO ")
    journal = await client.get("/_mock/requests")
    assert [call["status"] for call in journal.json()["requests"]][:1] == [200]
