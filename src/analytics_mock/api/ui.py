"""The dashboard: one page under `/_mock/ui` that reads and drives the control API.

The page and its two assets hold no data, so they are served without the control token (a
browser cannot send one on a navigation); every datum the page shows comes from the control
API itself, called by the page with the token the user gives it. The Host and Origin rules of
the network edge apply as everywhere (docs/dashboard.md).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from analytics_mock.api.controls import require_control_token
from analytics_mock.errors import ObjectNotFound
from analytics_mock.schemas.controls import FaultIn

UI_PATH = "/_mock/ui"
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# No inline script or style, nothing from elsewhere, no framing, no form posts.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

page = APIRouter(include_in_schema=False)
described = APIRouter(
    prefix="/_mock", include_in_schema=False, dependencies=[Depends(require_control_token)]
)


@cache
def _asset(name: str) -> bytes:
    return files("analytics_mock").joinpath("ui", name).read_bytes()


@page.get("/_mock")
@page.get("/_mock/")
def control_root() -> RedirectResponse:
    """The control API's root, opened in a browser, shows the dashboard."""
    return RedirectResponse(UI_PATH, status_code=303)


@page.get(UI_PATH)
def dashboard() -> Response:
    """The dashboard page."""
    return Response(_asset("index.html"), media_type="text/html", headers=_PAGE_HEADERS)


@page.get(UI_PATH + "/{name}")
def asset(name: str) -> Response:
    """The page's script and style sheet, from the package."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise ObjectNotFound(f'The file "{name}" was not found.')
    return Response(_asset(name), media_type=media_type, headers=_PAGE_HEADERS)


@described.get("/fault-schema")
def fault_schema() -> dict[str, Any]:
    """The JSON Schema of a fault rule (`POST /_mock/faults`): the page builds its form from it."""
    return FaultIn.model_json_schema()
