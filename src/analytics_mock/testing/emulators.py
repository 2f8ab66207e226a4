"""The emulators behind the pytest fixtures: one in-process, one a real server in a thread.

Both build the app with `create_app(settings, runtime=build_runtime(settings))`; the server
stack (FastAPI, SQLAlchemy, uvicorn, httpx) is imported only when one is built.
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


class AnalyticsMock(MockControls):
    """An emulator inside the test process, over its own database (the `analytics_mock` fixture).

    - `client`: a sync `httpx.Client` logged in as system/manager (Basic), base URL `url`:
      `client.get("/Analytics/v1/objects/EmailServerSettings")`.
    - `make_client(auth=...)`: another such client, with other credentials or none.
    - for clients of your own: `transport` (sync: `httpx.Client(transport=mock.transport)`),
      `async_transport` (an `httpx.ASGITransport`), `async_client(auth=...)` and `app`.
    - `url` ("http://127.0.0.1:22015", the Host the app sees) and `base_url` (+ "/Analytics/v1").
    - the `/_mock/` helpers of `MockControls`: `reset()`, `fault(...)`, `requests(...)`, ...

    Nothing listens on a socket: only clients built here reach the app. Usable outside pytest
    as a context manager: `with AnalyticsMock(settings) as mock: ...`.
    """

    url = f"http://{LOOPBACK}:22015"
    base_url = url + API_PATH

    def __init__(self, settings: Settings) -> None:
        import httpx

        from analytics_mock.app import create_app
        from analytics_mock.runtime import build_runtime
        from analytics_mock.testing._transport import SyncASGITransport

        self._clients: list[httpx.Client] = []
        self._runtime: Runtime = build_runtime(settings)
        try:
            self.app: FastAPI = create_app(settings, runtime=self._runtime)
        except BaseException:
            self._runtime.close()
            raise
        self.async_transport = httpx.ASGITransport(app=self.app)
        self.transport = SyncASGITransport(self.async_transport)
        super().__init__(self.make_client(auth=None))
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

    def close(self) -> None:
        """Close the clients made here and release the database."""
        for client in self._clients:
            client.close()
        self.transport.shutdown()
        self._runtime.close()

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

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from analytics_mock.app import create_app
        from analytics_mock.runtime import build_runtime

        self._runtime: Runtime = build_runtime(settings)
        # IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (see serving).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self._sock.bind((LOOPBACK, 0))
            self._sock.listen(128)
            port: int = self._sock.getsockname()[1]
            self.url = f"http://{LOOPBACK}:{port}"
            app = create_app(settings, runtime=self._runtime)
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

    def stop(self) -> None:
        """Ask the server to finish, wait for its thread, release the socket and database."""
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(STOP_TIMEOUT)
        self._sock.close()
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
    - the `/_mock/` helpers of `MockControls`, over real HTTP.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.base_url = url + API_PATH
        self.ui_url = url + "/_mock/ui"
        self._clients: list[httpx.Client] = []
        super().__init__(self.make_client(auth=None))
        self.client = self.make_client()

    def make_client(self, auth: tuple[str, str] | None = ADMIN_AUTH) -> httpx.Client:
        """A new sync `httpx.Client` of the server, base URL `url`; it is closed by `close()`."""
        import httpx

        client = httpx.Client(base_url=self.url, auth=auth, timeout=30.0)
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Close the clients made here (the server goes on)."""
        for client in self._clients:
            client.close()
