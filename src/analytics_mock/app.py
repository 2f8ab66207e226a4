"""The app factory: every app gets its own settings, database and caches."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from analytics_mock import __version__
from analytics_mock.api import controls, email_settings, test_mail, ui
from analytics_mock.api.controls_middleware import ControlsMiddleware
from analytics_mock.api.errors import install_error_handlers
from analytics_mock.api.middleware import HeadLimitMiddleware, VendorHttpMiddleware
from analytics_mock.api.openapi import install_documents
from analytics_mock.api.routes import DirectFront, DirectRoutes, call_endpoint
from analytics_mock.db.engine import Identity
from analytics_mock.runtime import Runtime, build_runtime
from analytics_mock.schemas.controls import FaultIn, MailFailureIn, Maintenance, State
from analytics_mock.schemas.email_settings import EmailSettingUpdate
from analytics_mock.schemas.test_mail import SendTestMailActionIn
from analytics_mock.settings import Settings, get_settings

# FastAPI 0.16x asks OpenTelemetry on every request whether tracing is configured (an
# environment lookup each time) and would record exception messages; a mock server wants
# neither. Older FastAPI has no such option.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def _nothing() -> None:
    """Work for a thread that only has to start."""


class AnalyticsApp(FastAPI):
    """FastAPI, with the emulated endpoints called from behind the app's own middleware."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.direct_routes: list[BaseRoute] = []

    def include_direct_router(self, router: APIRouter) -> None:
        """Include `router`, whose `DirectRoute`s are then called without the framework."""
        self.include_router(router)
        # The router's own routes: FastAPI's copies in `self.routes` differ between versions.
        self.direct_routes += router.routes

    def build_middleware_stack(self) -> ASGIApp:
        """The framework's stack, and beside it the same middleware around `call_endpoint`."""
        framework = super().build_middleware_stack()
        direct: ASGIApp = call_endpoint
        for cls, args, kwargs in reversed(self.user_middleware):
            direct = cls(direct, *args, **kwargs)
        return DirectFront(framework, direct, DirectRoutes(self.direct_routes))


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    file_identity: Identity | None = None,
) -> FastAPI:
    """Build a ready app: the database is migrated and seeded before this returns.

    `file_identity`: the SQLite file a worker's supervisor opened (see `build_runtime`).
    """
    settings = settings or get_settings()
    runtime = runtime or build_runtime(settings, file_identity=file_identity)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The first hop to a worker thread (a password's verification) imports anyio's event
        # loop backend: during a flood that holds every descriptor, that import failed the call
        # with a 500. Made here, at start-up, it cannot.
        await run_in_threadpool(_nothing)
        yield
        runtime.close()

    app = AnalyticsApp(
        **_NO_TELEMETRY,
        title="analytics-mock",
        version=__version__,
        description=(
            "An emulator of the Hitachi Ops Center Analyzer REST API for email server settings."
        ),
        lifespan=lifespan,
        redirect_slashes=False,
        # Served by `install_documents`: two documents, and the docs page without a CDN.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    # Added last, so outermost: the journal sees every answer, a 412 or a fault's included.
    app.add_middleware(VendorHttpMiddleware, max_body_size=settings.max_body_size)
    app.add_middleware(ControlsMiddleware, runtime=runtime)
    # Outermost: a head the HTTP layer would refuse is refused before the journal or a 412.
    app.add_middleware(HeadLimitMiddleware)
    app.include_direct_router(email_settings.router)
    app.include_direct_router(test_mail.router)
    app.include_router(controls.health)
    request_models: list[type[BaseModel]] = [EmailSettingUpdate, SendTestMailActionIn]
    if settings.control_api:
        app.include_router(controls.router)
        app.include_router(ui.described)
        app.include_router(ui.page)
        request_models += [State, FaultIn, Maintenance, MailFailureIn]
    install_documents(
        app,
        request_models,
        controls=settings.control_api,
        control_token=settings.control_token is not None,
    )
    return app
