"""The emulators behind the pytest fixtures: one in-process, one a real server in a thread.

Both build the app with `create_app(settings, runtime=build_runtime(settings))`; the server
stack (FastAPI, SQLAlchemy, uvicorn, httpx) is imported only when one is built. An `Emulator`
(runtime, app and transports) outlives a test: the fixtures keep one per configuration for the
session and reset it in-process before each test.
"""

# This module is imported by the pytest plugin in every pytest run of a project that installs
# analytics-mock, so the heavy imports are local to the functions that use them.
# ruff: noqa: PLC0415

from __future__ import annotations

import socket
import threading
import time
from functools import cache
from types import TracebackType
from typing import TYPE_CHECKING, Any

from analytics_mock.testing.controls import MockControls

if TYPE_CHECKING:
    import httpx
    import uvicorn
    from fastapi import FastAPI

    from analytics_mock.runtime import Runtime
    from analytics_mock.settings import Settings

ADMIN_AUTH = ("system", "manager")
API_PATH = "/Analytics/v1"
LOOPBACK = "127.0.0.1"
# What the in-process emulator calls itself: a name no resolver answers (RFC 6761), so code
# that builds its own client from `url` without `transport` fails instead of reaching a real
# server on the default port.
IN_PROCESS_URL = "http://analytics-mock.invalid"
INSTALL_HINT = "pip install 'analytics-mock[pytest]'"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


@cache
def _isolated_settings_class() -> type[Settings]:
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

    from analytics_mock.settings import Settings

    class IsolatedSettings(Settings):
        """Settings from the given values only: no `ANALYTICS_MOCK_*` variable leaks in."""

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    return IsolatedSettings


def isolated_settings(**values: Any) -> Settings:
    """`Settings(**values)`, ignoring the environment."""
    return _isolated_settings_class()(**values)


def require_httpx() -> None:
    """Raise, with the install command, when httpx (the `pytest` extra) is missing."""
    try:
        import httpx  # noqa: F401
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"analytics-mock's test helpers need httpx: {INSTALL_HINT}", name=error.name
        ) from error


class Emulator:
    """An app over its own runtime, with the transports that reach it in-process.

    Cheap to reset (`reset`), dear to build: the fixtures keep one per configuration.
    """

    def __init__(self, settings: Settings, *, wrap: Any = None) -> None:
        require_httpx()
        from analytics_mock.app import create_app
        from analytics_mock.runtime import build_runtime
        from analytics_mock.testing._transport import ASGITransport, SyncASGITransport

        self.settings = settings
        self.runtime: Runtime = build_runtime(settings)
        try:
            self.app: FastAPI = create_app(settings, runtime=self.runtime)
        except BaseException:
            self.runtime.close()
            raise
        # `wrap` (an ASGI middleware factory) sees every call; the coverage report uses it.
        served = wrap(self.app) if wrap is not None else self.app
        self.async_transport: httpx.ASGITransport = ASGITransport(app=served)
        self.transport = SyncASGITransport(self.async_transport)

    def reset(self) -> None:
        """Back to the seed, in-process; calls still in flight are fenced out first."""
        self.runtime.reset()

    def close(self) -> None:
        """End the transport's loop thread and release the database."""
        self.transport.shutdown()
        self.runtime.close()


def _with_token(client: httpx.Client, settings: Settings) -> httpx.Client:
    """`client`, sending the control token when the settings require one."""
    if settings.control_token is not None:
        client.headers["Authorization"] = f"Bearer {settings.control_token.get_secret_value()}"
    return client


class AnalyticsMock(MockControls):
    """An emulator inside the test process (the `analytics_mock` fixture).

    - `client`: a sync `httpx.Client` logged in as system/manager (Basic), base URL `url`:
      `client.get("/Analytics/v1/objects/EmailServerSettings")`.
    - `make_client(auth=...)`: another such client, with other credentials or none.
    - for clients of your own: `transport` (sync: `httpx.Client(base_url=mock.url,
      transport=mock.transport)`), `async_transport` (an `httpx.ASGITransport`),
      `async_client(auth=...)` and `app`.
    - `url` ("http://analytics-mock.invalid": it only works with `transport`, and no real
      server can answer it) and `base_url` (+ "/Analytics/v1").
    - the `/_mock/` helpers of `MockControls`: `reset()`, `fault(...)`, `requests(...)`, ...

    Nothing listens on a socket: only clients built on its transports reach the app. Usable
    outside pytest as a context manager: `with AnalyticsMock(settings) as mock: ...`.
    """

    url = IN_PROCESS_URL
    base_url = url + API_PATH

    def __init__(
        self, settings: Settings | None = None, *, emulator: Emulator | None = None
    ) -> None:
        if (settings is None) == (emulator is None):
            raise TypeError("give settings or an emulator")
        self._owned = emulator is None
        self._emulator = emulator if emulator is not None else Emulator(settings)  # type: ignore[arg-type]
        self._clients: list[httpx.Client] = []
        self.app: FastAPI = self._emulator.app
        self.async_transport = self._emulator.async_transport
        self.transport = self._emulator.transport
        super().__init__(_with_token(self.make_client(auth=None), self._emulator.settings))
        self.client = self.make_client()

    def make_client(self, auth: tuple[str, str] | None = ADMIN_AUTH) -> httpx.Client:
        """A new sync `httpx.Client` of the app, base URL `url`; it is closed by `close()`."""
        import httpx

        client = httpx.Client(transport=self.transport, base_url=self.url, auth=auth)
        self._clients.append(client)
        return client

    def async_client(self, auth: tuple[str, str] | None = ADMIN_AUTH) -> httpx.AsyncClient:
        """A new `httpx.AsyncClient` of the app, base URL `url`: `async with` it."""
        import httpx

        return httpx.AsyncClient(transport=self.async_transport, base_url=self.url, auth=auth)

    def reset(self) -> None:
        """Back to the seed, in-process (no HTTP round trip); calls in flight are fenced out."""
        self._emulator.reset()

    def close(self) -> None:
        """Close the clients made here; release the database if this mock built the emulator."""
        for client in self._clients:
            client.close()
        if self._owned:
            self._emulator.close()

    def __enter__(self) -> AnalyticsMock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class ServerThread:
    """A real uvicorn server in a daemon thread of this process, on 127.0.0.1.

    The socket is bound to port 0 before the thread starts, so the kernel picks a free port
    and `url` is known at once; the constructor returns when the server accepts connections.
    """

    def __init__(self, settings: Settings, *, wrap: Any = None) -> None:
        require_httpx()
        import httpx
        import uvicorn

        from analytics_mock.app import create_app
        from analytics_mock.runtime import build_runtime
        from analytics_mock.testing._transport import SharedTransport

        self.settings = settings
        self._runtime: Runtime = build_runtime(settings)
        self.runtime = self._runtime
        # One pool of keep-alive connections for every client of the fixture, and no TLS
        # context: loading the CA bundle cost each new client ~20 ms, for a plain-HTTP URL.
        self.http_transport = SharedTransport(httpx.HTTPTransport(verify=False))
        # IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (see serving).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self._sock.bind((LOOPBACK, 0))
            self._sock.listen(128)
            port: int = self._sock.getsockname()[1]
            self.url = f"http://{LOOPBACK}:{port}"
            app: Any = create_app(settings, runtime=self._runtime)
            if wrap is not None:
                app = wrap(app)
            # No lifespan (the runtime is closed in `stop`), no logging set-up, no websockets.
            config = uvicorn.Config(app, lifespan="off", log_config=None, log_level=None, ws="none")
            self._server: uvicorn.Server = uvicorn.Server(config)
            self._errors: list[BaseException] = []
            self._thread = threading.Thread(
                target=self._run, name=f"analytics-mock-server-{port}", daemon=True
            )
            self._thread.start()
            self._wait_started()
        except BaseException:
            self._sock.close()
            self._runtime.close()
            raise

    def _run(self) -> None:
        import asyncio

        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by `_wait_started` or `stop`
            self._errors.append(exc)

    def _wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                self._thread.join(STOP_TIMEOUT)
                reason = repr(self._errors[0]) if self._errors else "no error reported"
                raise RuntimeError(f"analytics-mock server did not start: {reason}")
            time.sleep(0.01)

    @property
    def base_url(self) -> str:
        """The emulated API's root: `url` + "/Analytics/v1"."""
        return self.url + API_PATH

    def reset(self) -> None:
        """Back to the seed, in-process; calls still in flight are fenced out first."""
        self._runtime.reset()

    def stop(self) -> None:
        """Ask the server to finish, wait for its thread, release the socket and database."""
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(STOP_TIMEOUT)
        self._sock.close()
        self.http_transport.shutdown()
        self._runtime.close()
        if self._thread.is_alive():
            raise RuntimeError(f"analytics-mock server at {self.url} did not stop")
        if self._errors:
            raise RuntimeError(f"analytics-mock server at {self.url} failed: {self._errors[0]!r}")


class AnalyticsMockServer(MockControls):
    """A running real server, seen from one test (the `analytics_mock_server` fixture).

    - `url` ("http://127.0.0.1:PORT") and `base_url` (+ "/Analytics/v1"): give them to code
      that opens its own connections.
    - `ui_url` (+ "/_mock/ui"): the dashboard, to open in a browser.
    - `client`: a sync `httpx.Client` logged in as system/manager (Basic), base URL `url`.
    - `make_client(auth=...)`: another such client, with other credentials or none.
    - the `/_mock/` helpers of `MockControls`, over real HTTP (`reset()` in-process when the
      server runs in this process).
    """

    def __init__(self, url: str | None = None, *, server: ServerThread | None = None) -> None:
        require_httpx()
        if server is not None:
            url = server.url
        if url is None:
            raise TypeError("give a url or a server")
        self.url = url
        self.base_url = url + API_PATH
        self.ui_url = url + "/_mock/ui"
        self._server = server
        self._clients: list[httpx.Client] = []
        controls = self.make_client(auth=None)
        super().__init__(_with_token(controls, server.settings) if server else controls)
        self.client = self.make_client()

    def make_client(self, auth: tuple[str, str] | None = ADMIN_AUTH) -> httpx.Client:
        """A new sync `httpx.Client` of the server, base URL `url`; it is closed by `close()`."""
        import httpx

        transport = self._server.http_transport if self._server is not None else None
        client = httpx.Client(base_url=self.url, auth=auth, timeout=30.0, transport=transport)
        self._clients.append(client)
        return client

    def reset(self) -> None:
        """Back to the seed; in-process when the server runs in this process, else over HTTP."""
        if self._server is not None:
            self._server.reset()
        else:
            super().reset()

    def close(self) -> None:
        """Close the clients made here (the server goes on)."""
        for client in self._clients:
            client.close()
