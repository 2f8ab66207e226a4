"""The dashboard's routes: the page and its assets, the fault schema, and who may fetch them."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from analytics_mock.api.edge_guard import EdgePolicy
from analytics_mock.schemas.controls import FaultIn
from tests.support.edge_guard import TOKEN, assert_refused, call

pytestmark = pytest.mark.anyio

MakeClient = Callable[..., httpx.AsyncClient]


async def test_the_control_root_redirects_to_the_page(client: httpx.AsyncClient) -> None:
    for path in ("/_mock", "/_mock/"):
        answer = await client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/_mock/ui"


async def test_the_page_and_its_assets_come_from_the_package_under_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/_mock/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/_mock/ui/app.js" defer></script>' in page.text
    for path, kind in (("/_mock/ui/app.js", "text/javascript"), ("/_mock/ui/app.css", "text/css")):
        asset = await client.get(path)
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(kind)
        assert asset.content
    for answer in (page, asset):
        policy = answer.headers["content-security-policy"]
        assert policy.startswith("default-src 'self'; script-src 'self'; style-src 'self';")
        assert "frame-ancestors 'none'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
    missing = await client.get("/_mock/ui/index.html")
    assert missing.status_code == 404
    assert missing.json()["messageID"] == "KNAQ20402-E"


async def test_the_fault_schema_is_the_control_apis_own(client: httpx.AsyncClient) -> None:
    answer = await client.get("/_mock/fault-schema")
    assert answer.status_code == 200
    assert answer.json() == FaultIn.model_json_schema()


async def test_the_dashboard_routes_are_not_in_the_openapi_document(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [
        path
        for path in paths
        if "/ui" in path or "fault-schema" in path or path in ("/_mock", "/_mock/")
    ]


async def test_with_a_token_the_page_is_open_and_the_data_is_not(make_client: MakeClient) -> None:
    async with make_client(control_token=TOKEN) as http:
        assert (await http.get("/_mock/ui")).status_code == 200
        assert (await http.get("/_mock/fault-schema")).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (await http.get("/_mock/fault-schema", headers=bearer)).status_code == 200


async def test_without_the_control_api_there_is_no_dashboard(make_client: MakeClient) -> None:
    async with make_client(control_api=False) as http:
        for path in ("/_mock/ui", "/_mock/ui/app.js", "/_mock/", "/_mock/fault-schema"):
            assert (await http.get(path)).status_code == 404, path


GUARDED = EdgePolicy(loopback_bind=False, control_token=TOKEN.encode())


@pytest.mark.parametrize(
    "path", ["/_mock", "/_mock/", "/_mock/ui", "/_mock/ui/app.js", "/_mock/ui/app.css"]
)
async def test_the_guard_lets_the_page_through_without_the_token(path: str) -> None:
    assert (await call(GUARDED, path)).status_code == 200


@pytest.mark.parametrize(
    "path", ["/_mock/ui/other", "/_mock/fault-schema", "/_mock/state", "/_mock/uix"]
)
async def test_the_guard_still_wants_the_token_for_anything_else(path: str) -> None:
    assert_refused(await call(GUARDED, path), 401, "KNAQ20101-E")


async def test_the_page_is_refused_to_another_site() -> None:
    assert_refused(
        await call(GUARDED, "/_mock/ui", Origin="https://evil.example"), 403, "KNAQ20303-E"
    )
    assert_refused(
        await call(GUARDED, "/_mock/ui", Sec_Fetch_Site="cross-site"), 403, "KNAQ20303-E"
    )
