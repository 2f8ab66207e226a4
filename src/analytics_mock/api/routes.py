"""A route class for the emulated API's endpoints: documented by FastAPI, called directly.

Each emulated endpoint takes the `Request` (and its path parameters as text), runs its checks in
the vendor's order itself, and returns a `Response`. FastAPI still reads its signature for the
OpenAPI document, but resolving that signature on every call (dependencies, parameter
validation, response handling) cost more than the endpoint's own checks; this route calls the
endpoint with the request and the raw path parameters instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class DirectRoute(APIRoute):
    """An APIRoute whose endpoint is `async def (request, **path_params) -> Response`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Call the endpoint with the request and its path parameters, nothing else."""
        endpoint: Callable[..., Awaitable[Response]] = self.endpoint

        async def handler(request: Request) -> Response:
            params: dict[str, Any] = request.path_params
            return await endpoint(request, **params)

        return handler
