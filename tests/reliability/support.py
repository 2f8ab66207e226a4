"""Helpers of the reliability tests: server processes, PostgreSQL schemas, envelope checks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("ANALYTICS_MOCK_TEST_POSTGRES_URL")

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
ENVELOPE_KEYS = {"errorSource", "message", "messageID", "application"}
# What a leaked stack trace or driver error would put in a body.
LEAK_MARKERS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "sqlite3")


def free_port() -> int:
    """A loopback port that was free a moment ago: bind port 0 and let the kernel choose."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def postgres_schema_url(admin_url: str) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema, dropped afterwards."""
    schema = f"r_{uuid.uuid4().hex[:16]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@dataclass
class ServerProcess:
    """One `python -m analytics_mock serve` process on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    database_url: str
    args: tuple[str, ...]
    stdout_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(
            errors="replace"
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> ServerProcess:
        """Return once /healthz answers; fail with the server's output otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server did not answer within {timeout} s:\n{self.output()}")

    def client(self, timeout: float = 15.0, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, **kwargs)

    def kill(self) -> None:
        """SIGKILL, and reap the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> int:
        """SIGTERM, a bounded wait, then SIGKILL; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


def start_server_process(
    directory: Path,
    database_url: str,
    *args: str,
    env: dict[str, str] | None = None,
    index: int = 0,
    port: int | None = None,
) -> ServerProcess:
    """Start a server (without waiting for it) from `directory`, with a clean environment."""
    port = port or free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_MOCK_")}
    clean.update(env or {})
    stdout_path = directory / f"server{index}-{port}.out"
    stderr_path = directory / f"server{index}-{port}.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "analytics_mock",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database-url",
                database_url,
                "--test-mail-mode",
                "capture",
                *args,
            ],
            cwd=directory,
            env=clean,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    return ServerProcess(process, port, database_url, args, stdout_path, stderr_path)


def envelope_problems(response: httpx.Response, status: int | tuple[int, ...]) -> list[str]:
    """What is wrong with `response` as the vendor's error envelope of `status` (empty: ok)."""
    statuses = (status,) if isinstance(status, int) else status
    problems: list[str] = []
    if response.status_code not in statuses:
        problems.append(f"status {response.status_code}, expected {statuses}")
    if response.headers.get("content-type") != "application/json":
        problems.append(f"content-type {response.headers.get('content-type')!r}")
    try:
        body = response.json()
    except ValueError:
        return [*problems, f"body is not JSON: {response.text[:200]!r}"]
    if not isinstance(body, dict) or set(body) != ENVELOPE_KEYS:
        return [*problems, f"body is not the envelope: {response.text[:200]!r}"]
    if body["application"] != "Analytics":
        problems.append(f"application {body['application']!r}")
    if not str(body["message"]).startswith(f"{body['messageID']} "):
        problems.append(f"message {body['message']!r} does not start with its ID")
    raw_path = response.request.url.raw_path.split(b"?", 1)[0].decode("latin-1")
    if body["errorSource"] != raw_path:
        problems.append(f"errorSource {body['errorSource']!r} is not the path {raw_path!r}")
    problems.extend(
        f"{marker!r} leaked in the body" for marker in LEAK_MARKERS if marker in response.text
    )
    return problems
