"""The emulated API's endpoints: documented by FastAPI, called directly behind our own layers.

Each emulated endpoint takes the `Request` (and its path parameters as text), runs its checks in
the vendor's order itself, and returns a `Response`. FastAPI reads its signature for the OpenAPI
document only. Resolving that signature on every call, and passing each call through
Starlette's and FastAPI's own layers (error handlers, exit stacks, body limits, telemetry,
routing over every route), cost more CPU than the endpoint and its database work together.
`DirectFront` therefore calls an endpoint straight from the app's own middleware when a request
matches it exactly; any other request (an unknown path, a wrong method, the control API, the
docs) takes the framework's way, which answers 404 and 405 in the vendor's envelope.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from analytics_mock.api.errors import error_response
from analytics_mock.errors import DomainError

Endpoint = Callable[..., Awaitable[Response]]


class DirectRoute(APIRoute):
    """An APIRoute whose endpoint is `async def (request, **path_params) -> Response`.

    The contract: the direct path calls the endpoint with the `Request` and its path
    parameters as text, and sends the `Response` it returns; nothing else FastAPI would do
    for a route happens. A route that declares anything more is refused when it is built.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        ignored = direct_path_ignores(self)
        if ignored:
            raise TypeError(f"{self.path}: the direct path would ignore {', '.join(ignored)}")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Call the endpoint with the request and its path parameters, nothing else."""
        endpoint: Endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            params: dict[str, Any] = request.path_params
            return await endpoint(request, **params)

        return handler


def direct_path_ignores(route: APIRoute) -> list[str]:
    """What `route` declares that a call through `call_endpoint` would not honour."""
    dependant = route.dependant
    found = []
    if not inspect.iscoroutinefunction(route.endpoint):
        found.append("a plain def endpoint (it would block the event loop)")
    if route.dependencies or dependant.dependencies:
        found.append("dependencies (Depends)")
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        found.append("query, header or cookie parameters")
    if dependant.body_params:
        found.append("body parameters")
    if route.response_model is not None:
        found.append("response_model")
    if route.status_code is not None:
        found.append("status_code")
    if dependant.request_param_name != "request":
        found.append("the request under another name than `request`")
    if any(param.field_info.annotation is not str for param in dependant.path_params):
        found.append("path parameters of another type than str")
    return found


class DirectRoutes:
    """The app's `DirectRoute`s, matched by exact method and path as Starlette's router would."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._routes = [route for route in routes if isinstance(route, DirectRoute)]

    def match(self, scope: Scope) -> tuple[Endpoint, dict[str, Any]] | None:
        """The endpoint and path parameters for this request, when one route takes it whole."""
        # A root path would need Starlette's handling of it; no direct call then.
        if scope.get("root_path"):
            return None
        method, path = scope["method"], scope["path"]
        for route in self._routes:
            if route.methods is None or method not in route.methods:
                continue
            found = route.path_regex.match(path)
            if found is None:
                continue
            convert = route.param_convertors
            params = {key: convert[key].convert(text) for key, text in found.groupdict().items()}
            return route.endpoint, params
        return None


async def call_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """Run the endpoint `DirectFront` matched; a domain error becomes the vendor's envelope."""
    endpoint: Endpoint = scope["endpoint"]
    try:
        response = await endpoint(Request(scope, receive, send), **scope["path_params"])
    except DomainError as exc:
        response = error_response(scope, exc)
    await response(scope, receive, send)


class DirectFront:
    """Sends a request that a `DirectRoute` matches to `direct`, anything else to `framework`."""

    def __init__(self, framework: ASGIApp, direct: ASGIApp, routes: DirectRoutes) -> None:
        self.framework = framework
        self.direct = direct
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            matched = self.routes.match(scope)
            if matched is not None:
                scope["endpoint"], scope["path_params"] = matched
                await self.direct(scope, receive, send)
                return
        await self.framework(scope, receive, send)
