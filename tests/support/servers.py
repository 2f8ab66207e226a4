"""Real `analytics-mock serve` processes on 127.0.0.1 for tests, and the databases they use.

A server runs from a scratch directory with the test's environment minus every ANALYTICS_MOCK_
setting, on a port found by binding port 0, its stdout and stderr in files there; every wait is
bounded, and whoever starts one stops or kills it.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("ANALYTICS_MOCK_TEST_POSTGRES_URL")

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CLIENT_TIMEOUT = 15.0
ERROR_PREFIX = "analytics-mock: error:"
# `--workers` starts and stops its processes one after another: its tests allow more time.
WORKERS_READY_TIMEOUT = 30.0
WORKERS_STOP_TIMEOUT = 20.0


def free_port() -> int:
    """A loopback port that was free a moment ago: bind port 0 and let the kernel choose."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any ANALYTICS_MOCK_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_MOCK_")}
    env.update(extra or {})
    return env


def child_pids(pid: int) -> set[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    children: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name is in parentheses and may hold spaces: split after it.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.add(int(entry.name))
    return children


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a running (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextmanager
def postgres_schema_url(admin_url: str, prefix: str = "r_") -> Iterator[str]:
    """A URL whose search_path is a new, empty schema, dropped afterwards."""
    schema = f"{prefix}{uuid.uuid4().hex[:16]}"
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


def strict_context(cafile: Path) -> ssl.SSLContext:
    """A client context that trusts only `cafile`, as strict as Python 3.13's default."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


@dataclass
class ServerProcess:
    """One `python -m analytics_mock serve` process and where its output goes."""

    process: subprocess.Popen[bytes]
    port: int
    https_port: int | None
    stdout_path: Path
    stderr_path: Path
    ready_timeout: float = READY_TIMEOUT
    stop_timeout: float = STOP_TIMEOUT
    client_timeout: float = CLIENT_TIMEOUT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def output(self) -> str:
        """Everything the process wrote so far, stdout then stderr."""
        return self.stdout_path.read_text(errors="replace") + self.stderr()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float | None = None) -> ServerProcess:
        """Return once /healthz answers 200; fail with the server's output otherwise."""
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"server did not answer within {timeout} s:\n{self.output()}")

    def client(self, timeout: float | None = None, **kwargs: Any) -> httpx.Client:
        timeout = self.client_timeout if timeout is None else timeout
        return httpx.Client(base_url=self.url, timeout=timeout, **kwargs)

    def kill(self) -> None:
        """SIGKILL the server and the workers it started, and reap it."""
        # Only while the process is unreaped is its PID still its own to look children up by.
        children = child_pids(self.process.pid) if self.process.poll() is None else set()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=self.stop_timeout)
        _kill_survivors(children)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum`, wait a bounded time, then `kill`; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def close(self) -> None:
        """Teardown: `stop`, and SIGKILL any worker the server left behind."""
        children = child_pids(self.process.pid) if self.process.poll() is None else set()
        self.stop()
        _kill_survivors(children)


def _kill_survivors(pids: set[int]) -> None:
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def start_server_process(
    directory: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    host: str | None = "127.0.0.1",
    https: bool = False,
    index: int = 0,
    ready_timeout: float = READY_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
    client_timeout: float = CLIENT_TIMEOUT,
) -> ServerProcess:
    """Start `serve *args` from `directory` on free ports (host None: the default), not waiting."""
    port = free_port()
    https_port = free_port() if https else None
    command = [sys.executable, "-m", "analytics_mock", "serve"]
    if host is not None:
        command += ["--host", host]
    command += ["--port", str(port), *args]
    if https_port is not None:
        command += ["--https-port", str(https_port)]
    stdout_path = directory / f"server{index}-{port}.out"
    stderr_path = directory / f"server{index}-{port}.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    return ServerProcess(
        process,
        port,
        https_port,
        stdout_path,
        stderr_path,
        ready_timeout=ready_timeout,
        stop_timeout=stop_timeout,
        client_timeout=client_timeout,
    )


@contextmanager
def running_server(
    directory: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    host: str | None = "127.0.0.1",
    https: bool = False,
    ready_timeout: float = READY_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
) -> Iterator[ServerProcess]:
    """`start_server_process`, ready, for the length of a `with` block."""
    server = start_server_process(
        directory,
        *args,
        env=env,
        host=host,
        https=https,
        ready_timeout=ready_timeout,
        stop_timeout=stop_timeout,
    )
    try:
        yield server.wait_ready()
    finally:
        server.close()


def running_server_at_default_host(
    cwd: Path, *args: str, https: bool = False
) -> AbstractContextManager[ServerProcess]:
    """`running_server` in `cwd` at serve's default host (no `--host`), with longer waits.

    Some tests check that default host; the waits are those `--workers` needs
    (`WORKERS_READY_TIMEOUT`, `WORKERS_STOP_TIMEOUT`).
    """
    return running_server(
        cwd,
        *args,
        host=None,
        https=https,
        ready_timeout=WORKERS_READY_TIMEOUT,
        stop_timeout=WORKERS_STOP_TIMEOUT,
    )


def workers_of(server: ServerProcess, count: int = 2) -> set[int]:
    """The worker processes of `server`, once `count` of them serve (bounded wait)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # The spawn machinery adds a resource tracker beside the workers.
        workers = {
            pid
            for pid in child_pids(server.process.pid)
            if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
        }
        # A worker logs this once its app is built, just before it takes connections.
        log = server.output()
        if len(workers) == count and all(f"Started server process [{p}]" in log for p in workers):
            return workers
        time.sleep(0.1)
    pytest.fail(f"not {count} workers serving:\n{server.output()}")


def serve_refusal(directory: Path, *args: str) -> str:
    """Run `serve` that must refuse to start; return its one error line."""
    result = subprocess.run(
        [sys.executable, "-m", "analytics_mock", "serve", *args],
        cwd=directory,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]
    return errors[0]
