"""`DirectRoute`'s contract: a route that declares what the direct path would ignore is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from analytics_mock.api import email_settings, test_mail
from analytics_mock.api.routes import DirectRoute, direct_path_ignores


class Body(BaseModel):
    name: str


async def dependency() -> None:
    """A dependency the direct path would never run."""


async def fine(request: Request, id: str) -> Response:
    return Response()


async def with_depends(request: Request, _d: Annotated[None, Depends(dependency)]) -> Response:
    return Response()


async def with_query(request: Request, limit: Annotated[int, Query()] = 1) -> Response:
    return Response()


async def with_body(request: Request, body: Body) -> Response:
    return Response()


async def with_int_path(request: Request, id: int) -> Response:
    return Response()


async def with_other_name(req: Request) -> Response:
    return Response()


def blocking(request: Request) -> Response:
    return Response()


def test_every_emulated_route_keeps_the_contract() -> None:
    routes = [*email_settings.router.routes, *test_mail.router.routes]
    assert routes and all(isinstance(route, DirectRoute) for route in routes)
    assert [direct_path_ignores(route) for route in routes] == [[]] * len(routes)  # type: ignore[arg-type]


def test_a_route_that_keeps_it_is_built() -> None:
    router = APIRouter(route_class=DirectRoute)
    router.add_api_route("/things/{id}", fine, methods=["PUT"])


@pytest.mark.parametrize(
    ("path", "endpoint", "options", "ignored"),
    [
        ("/x", with_depends, {}, "dependencies"),
        ("/x", fine, {"dependencies": [Depends(dependency)]}, "dependencies"),
        ("/x", with_query, {}, "query, header or cookie parameters"),
        ("/x", with_body, {}, "body parameters"),
        ("/x/{id}", fine, {"response_model": Body}, "response_model"),
        ("/x/{id}", fine, {"status_code": 201}, "status_code"),
        ("/x/{id}", with_int_path, {}, "path parameters of another type than str"),
        ("/x", with_other_name, {}, "the request under another name"),
        ("/x", blocking, {}, "a plain def endpoint"),
    ],
)
def test_a_route_that_declares_what_the_direct_path_ignores_is_refused(
    path: str, endpoint: Callable[..., Any], options: dict[str, Any], ignored: str
) -> None:
    router = APIRouter(route_class=DirectRoute)
    with pytest.raises(TypeError, match=f"direct path would ignore .*{ignored}"):
        router.add_api_route(path, endpoint, methods=["GET"], **options)


def test_dependencies_of_the_router_count_too() -> None:
    router = APIRouter(route_class=DirectRoute, dependencies=[Depends(dependency)])
    with pytest.raises(TypeError, match="dependencies"):
        router.add_api_route("/x/{id}", fine, methods=["GET"])
