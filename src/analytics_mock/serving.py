"""`analytics-mock serve`: HTTP and HTTPS from one process, or from several worker processes.

Every process serves both ports: one uvicorn server per port in one event loop, because uvicorn
takes its TLS settings per server. With `--workers N` the parent binds the sockets, hands them
to N spawned workers and restarts a worker that dies; the workers build the app from the
`ANALYTICS_MOCK_*` environment, which the parent sets to the effective configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from analytics_mock import __version__
from analytics_mock.app import create_app
from analytics_mock.cli import DATABASE_ERRORS, CliError, _database_error
from analytics_mock.http_protocol import VendorHttpToolsProtocol
from analytics_mock.logs import configure_logging
from analytics_mock.services.seed import SeedFileError
from analytics_mock.services.users import UsersFileError
from analytics_mock.settings import Settings, get_settings
from analytics_mock.tls import TlsError, TlsFiles, check_options, tls_files

logger = logging.getLogger("analytics_mock")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long requests in flight may take to finish once the server is asked to stop.
GRACE_SECONDS = 5
# A worker exits with this status when it cannot build the app; restarting it would not help.
_CANNOT_START = 3
# A worker that dies sooner than this after its start is failing, not crashing once.
_MIN_UPTIME_SECONDS = 5.0
# Windows has no signal masks.
_HAS_SIGNAL_MASKS = hasattr(signal, "pthread_sigmask")


@dataclass
class Listener:
    """A bound socket and, for HTTPS, the certificate it serves."""

    sock: socket.socket
    tls: TlsFiles | None = None

    @property
    def url(self) -> str:
        """The base URL of the API on this socket."""
        host, port = self.sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{port}/Analytics/v1"


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; a reason not to start is a CliError."""
    try:
        check_options(settings)
    except TlsError as exc:
        raise CliError(str(exc)) from None
    url = make_url(settings.database_url_text)
    in_memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
    if settings.workers > 1 and in_memory:
        raise CliError("--workers needs a database file or PostgreSQL, not SQLite in memory")
    # Even with workers, the database and users file are checked here, once and in one line.
    app = open_app(settings)
    settle_collector()
    try:
        tls = tls_files(settings)
    except TlsError as exc:
        raise CliError(str(exc)) from None
    listeners = [Listener(_bind(settings.host, settings.port))]
    if tls is not None and settings.https_port is not None:
        listeners.append(Listener(_bind(settings.host, settings.https_port), tls))
    _log_banner(settings, listeners)
    if settings.workers == 1:
        asyncio.run(serve_app(app, listeners))
        return
    app.state.runtime.close()  # each worker builds its own
    if tls is not None:
        settings = settings.model_copy(update={"certfile": tls.certfile, "keyfile": tls.keyfile})
    export_settings(settings)
    _supervise(settings.workers, listeners)


# Calls leave no reference cycles behind (tests/api/test_controls.py pins it), except an error
# raised inside a unit of database work (its traceback and the runner's frames), so reference
# counting frees almost everything. Collecting every 700 allocations, the default, was a pass
# over every object of the calls in flight every few calls: 5 to 10 % of a busy server's CPU.
COLLECT_EVERY = 10_000


def settle_collector() -> None:
    """Turn collection on for serving, with a threshold for a server's allocation pattern."""
    # Never through what the start made (`cli._serve` turned collection off for it), which
    # would cost one full collection (~60 ms) right away and more now and then.
    gc.freeze()
    gc.set_threshold(COLLECT_EVERY, 10, 10)
    gc.enable()


def open_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (the environment's when None); a start-up failure is a CliError."""
    effective = settings or get_settings()
    try:
        return create_app(effective)
    except UsersFileError as exc:
        raise CliError(f"bad --users-file: {exc}") from None
    except SeedFileError as exc:
        raise CliError(f"bad --seed-file: {exc}") from None
    except DATABASE_ERRORS as exc:
        raise CliError(_database_error(effective, exc)) from None


def export_settings(settings: Settings) -> None:
    """Put every setting into `ANALYTICS_MOCK_*`, where the workers' `get_settings()` reads it."""
    for name in Settings.model_fields:
        key = f"ANALYTICS_MOCK_{name.upper()}"
        value = getattr(settings, name)
        if value is None:
            os.environ.pop(key, None)
        elif isinstance(value, SecretStr):
            os.environ[key] = value.get_secret_value()
        elif isinstance(value, bool):
            os.environ[key] = "true" if value else "false"
        else:
            os.environ[key] = str(value)


async def serve_app(app: FastAPI, listeners: list[Listener]) -> None:
    """Serve `app` on every listener from this event loop until SIGINT or SIGTERM."""
    servers = [_Server(_config(app, listener)) for listener in listeners]

    def stop(signum: int, _frame: FrameType | None) -> None:
        for server in servers:
            # A second Ctrl+C abandons the requests still running, as plain uvicorn does.
            if server.should_exit and signum == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    if _HAS_SIGNAL_MASKS:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # The app's lifespan wraps all servers, so its clean-up runs once, after the last request.
    async with app.router.lifespan_context(app):
        await asyncio.gather(
            *(
                server.serve(sockets=[listener.sock])
                for server, listener in zip(servers, listeners, strict=True)
            )
        )


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the signals to `serve_app`, which stops every server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing."""
        yield


def _config(app: FastAPI, listener: Listener) -> uvicorn.Config:
    tls = listener.tls
    return uvicorn.Config(
        app,
        http=VendorHttpToolsProtocol,
        lifespan="off",
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
        ssl_certfile=str(tls.certfile) if tls else None,
        ssl_keyfile=str(tls.keyfile) if tls else None,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP, and without it every response waits ~40 ms on Nagle.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # Lets a restarted server take its port back at once, as uvicorn does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sock


def _log_banner(settings: Settings, listeners: list[Listener]) -> None:
    processes = f" with {settings.workers} worker processes" if settings.workers > 1 else ""
    for listener in listeners:
        logger.info("analytics-mock %s serving %s%s", __version__, listener.url, processes)
        if listener.tls is not None:
            kind = "self-signed certificate" if listener.tls.generated else "certificate"
            logger.info(
                "HTTPS %s %s, SHA-256 fingerprint %s",
                kind,
                listener.tls.certfile,
                listener.tls.fingerprint,
                extra={"certfile": str(listener.tls.certfile), "sha256": listener.tls.fingerprint},
            )


@dataclass
class _Worker:
    process: BaseProcess
    started: float = field(default_factory=time.monotonic)


def _supervise(count: int, listeners: list[Listener]) -> None:
    """Keep `count` workers serving the listeners until SIGINT or SIGTERM, then stop them all."""
    stopping: list[int] = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda received, _frame: stopping.append(received))
    workers = [_start_worker(listeners) for _ in range(count)]
    try:
        while not stopping:
            time.sleep(0.2)
            for index, worker in enumerate(workers):
                status = worker.process.exitcode
                if status is None or stopping:
                    continue
                if status == _CANNOT_START or (
                    time.monotonic() - worker.started < _MIN_UPTIME_SECONDS
                ):
                    raise CliError(f"a worker process failed to start (exit status {status})")
                logger.warning(
                    "worker process %s ended (exit status %s); starting another",
                    worker.process.pid,
                    status,
                )
                workers[index] = _start_worker(listeners)
    finally:
        _stop_workers(workers)


def _start_worker(listeners: list[Listener]) -> _Worker:
    process = multiprocessing.get_context("spawn").Process(
        target=_worker_main, args=(listeners,), name="analytics-mock-worker"
    )
    if not _HAS_SIGNAL_MASKS:
        process.start()
        return _Worker(process)
    # Born with SIGINT and SIGTERM blocked, a worker takes them only once it can stop cleanly.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return _Worker(process)


def _stop_workers(workers: list[_Worker]) -> None:
    for worker in workers:
        if worker.process.exitcode is None:
            worker.process.terminate()
    deadline = time.monotonic() + GRACE_SECONDS + 5
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.exitcode is None:
            logger.warning("worker process %s did not stop in time; killed", worker.process.pid)
            worker.process.kill()
            worker.process.join()


def _worker_main(listeners: list[Listener]) -> None:
    """A worker: the app from the environment's settings, served on the parent's sockets."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        app = open_app()
    except CliError as exc:
        logger.error("worker process %d cannot start: %s", os.getpid(), exc)
        sys.exit(_CANNOT_START)
    settle_collector()
    asyncio.run(serve_app(app, listeners))
