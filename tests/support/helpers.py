"""Constants and small helpers shared by the tests."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import socket
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from starlette.types import ASGIApp

SETTINGS_PATH = "/Analytics/v1/objects/EmailServerSettings"
OBJECT_PATH = SETTINGS_PATH + "/mailServerSetting%230"


def basic(user: str = "system", password: str = "manager") -> dict[str, str]:
    """An Authorization header for Basic credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN = basic()


def sqlite_at_revision(path: Path, revision: str) -> str:
    """The URL of a new SQLite file at an older schema `revision`, as an older release left it."""
    from alembic import command  # noqa: PLC0415 - Alembic is an extra
    from alembic.config import Config  # noqa: PLC0415
    from sqlalchemy import create_engine  # noqa: PLC0415

    from analytics_mock.db.migrate import SCRIPT_LOCATION  # noqa: PLC0415

    url = f"sqlite:///{path}"
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    return url


async def asgi_call(
    app: ASGIApp,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    *,
    query: bytes = b"",
    body: bytes = b"",
) -> list[MutableMapping[str, Any]]:
    """The messages `app` sends for one request whose headers go as given (repeats included).

    `path` is as sent, percent-encoded; the scope's `path` is it decoded.
    """
    sent: list[MutableMapping[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": unquote(path), "raw_path": path.encode(),
        "query_string": query, "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 22015),
    }  # fmt: skip
    await app(scope, receive, send)
    return sent


@contextlib.contextmanager
def install_lock(folder: Path) -> Iterator[None]:
    """Held while checking and installing into `folder`: one xdist worker installs, the rest wait.

    Two npm installs in one folder see each other's half-written files.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; a timeout (never closed) raises."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def journalled(base_url: str, method: str, timeout: float = 10.0) -> dict[str, Any]:
    """The newest journal entry of `method`, once there is one (its write may follow the answer).

    The server has already answered and closed when a test asks: the entry is awaited by
    polling the journal, bounded by `timeout`.
    """
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base_url, timeout=timeout) as http:
        while True:
            entries = http.get("/_mock/requests", params={"method": method}).json()["requests"]
            if entries:
                return dict(entries[0])
            assert time.monotonic() < deadline, f"no {method} in the journal"
            time.sleep(0.02)
