"""`analytics-mock serve`: HTTP and HTTPS from one process, or from several worker processes.

Every process serves both ports: one uvicorn server per port in one event loop, because uvicorn
takes its TLS settings per server. With `--workers N` the parent binds the sockets, hands them
to N spawned workers and restarts a worker that dies; the workers build the app from the
`ANALYTICS_MOCK_*` environment, which the parent sets to the effective configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from analytics_mock import __version__
from analytics_mock.api.edge_guard import EdgeGuard, EdgePolicy, is_loopback_host
from analytics_mock.app import create_app
from analytics_mock.db.engine import Identity
from analytics_mock.http_protocol import (
    AcceptErrorFilter,
    EdgeLimits,
    VendorHttpToolsProtocol,
    listening_socket,
)
from analytics_mock.logs import configure_logging
from analytics_mock.services.journal import redact_text
from analytics_mock.services.seed import SeedFileError
from analytics_mock.services.users import UsersFileError
from analytics_mock.settings import (
    DATABASE_ERRORS,
    Settings,
    StartError,
    database_error,
    get_settings,
    mask_database_url,
)
from analytics_mock.tls import TlsError, TlsFiles, check_options, tls_files

logger = logging.getLogger("analytics_mock")

API_PATH = "/Analytics/v1"

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long requests in flight may take to finish once the server is asked to stop.
GRACE_SECONDS = 5
# A worker exits with this status when it cannot build the app; restarting it would not help.
_CANNOT_START = 3
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
        return f"{'https' if self.tls else 'http'}://{host}:{port}{API_PATH}"


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; a reason not to start is a StartError."""
    try:
        check_options(settings)
    except TlsError as exc:
        raise StartError(str(exc)) from None
    url = make_url(settings.database_url_text)
    in_memory = url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")
    if settings.workers > 1 and in_memory:
        raise StartError("--workers needs a database file or PostgreSQL, not SQLite in memory")
    if settings.control_token is not None and settings.no_control_token:
        raise StartError("--control-token and --no-control-token exclude each other")
    settings, generated = with_control_token(settings)
    # Even with workers, the database and users file are checked here, once and in one line.
    app = open_app(settings)
    settle_collector()
    try:
        tls = tls_files(settings)
    except TlsError as exc:
        raise StartError(str(exc)) from None
    listeners = [Listener(_bind(settings.host, settings.port))]
    if tls is not None and settings.https_port is not None:
        listeners.append(Listener(_bind(settings.host, settings.https_port), tls))
    log_start(settings, listeners, generated_token=generated)
    if settings.workers == 1:
        asyncio.run(serve_app(app, listeners))
        return
    # Every worker, a replacement started later included, serves the SQLite file opened here
    # or none: a file replaced under the server would otherwise be served beside the old one.
    database = app.state.runtime.db
    identity = database.file.identity if database.file is not None else None
    app.state.runtime.close()  # each worker builds its own
    if tls is not None:
        settings = settings.model_copy(update={"certfile": tls.certfile, "keyfile": tls.keyfile})
    export_settings(settings)
    _supervise(settings, listeners, identity)


def with_control_token(settings: Settings) -> tuple[Settings, bool]:
    """`settings`, with a token made up for a bind beyond loopback that has none; and whether."""
    if (
        settings.control_token is not None
        or settings.no_control_token
        or not settings.control_api
        or is_loopback_host(settings.host)
    ):
        return settings, False
    token = SecretStr(secrets.token_urlsafe(32))
    return settings.model_copy(update={"control_token": token}), True


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


def open_app(settings: Settings | None = None, *, file_identity: Identity | None = None) -> FastAPI:
    """The app for `settings` (the environment's when None); a start-up failure is a StartError."""
    effective = settings or get_settings()
    try:
        return create_app(effective, file_identity=file_identity)
    except UsersFileError as exc:
        raise StartError(f"bad --users-file: {exc}") from None
    except SeedFileError as exc:
        raise StartError(f"bad --seed-file: {exc}") from None
    except DATABASE_ERRORS as exc:
        raise StartError(database_error(effective, exc)) from None


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
        elif isinstance(value, list):
            os.environ[key] = ",".join(value)
        else:
            os.environ[key] = str(value)


async def serve_app(app: FastAPI, listeners: list[Listener]) -> None:
    """Serve `app` on every listener from this event loop until SIGINT or SIGTERM."""
    settings: Settings = app.state.runtime.settings
    guarded = EdgeGuard(app, EdgePolicy.from_settings(settings))
    limits = EdgeLimits.from_settings(settings)
    servers = [_Server(_config(guarded, listener, settings, limits)) for listener in listeners]
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptErrorFilter(loop.get_exception_handler()))

    def stop(signum: int, _frame: FrameType | None) -> None:
        for server in servers:
            # A second Ctrl+C abandons the requests still running, as plain uvicorn does.
            if server.should_exit and signum == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True
        # Refuse new connections now rather than at uvicorn's next tick.
        loop.call_soon_threadsafe(_stop_accepting, servers)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    if _HAS_SIGNAL_MASKS:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # The app's lifespan wraps all servers, so its clean-up runs once, after the last request.
    socks = [listening_socket(listener.sock) for listener in listeners]
    async with app.router.lifespan_context(app):
        await asyncio.gather(
            *(server.serve(sockets=[sock]) for server, sock in zip(servers, socks, strict=True))
        )


def _stop_accepting(servers: list[_Server]) -> None:
    for server in servers:
        for listening in getattr(server, "servers", []):
            listening.close()


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the signals to `serve_app`, which stops every server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing."""
        yield


class _EdgeConfig(uvicorn.Config):
    """uvicorn's configuration, with the limits `VendorHttpToolsProtocol` enforces."""

    edge_limits: EdgeLimits


def _config(
    app: ASGIApp, listener: Listener, settings: Settings, limits: EdgeLimits
) -> uvicorn.Config:
    tls = listener.tls
    # X-Forwarded-* only from the proxies the operator names; uvicorn would believe loopback.
    proxies = settings.forwarded_allow_ips
    config = _EdgeConfig(
        app,
        http=VendorHttpToolsProtocol,
        lifespan="off",
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=GRACE_SECONDS,
        timeout_keep_alive=max(1, round(settings.idle_timeout)),
        proxy_headers=proxies is not None,
        forwarded_allow_ips=proxies or "",
        ssl_certfile=str(tls.certfile) if tls else None,
        ssl_keyfile=str(tls.keyfile) if tls else None,
    )
    config.edge_limits = limits
    return config


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
        raise StartError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sock


def log_start(settings: Settings, listeners: list[Listener], *, generated_token: bool) -> None:
    """One info line on what serves where; the whole configuration at debug; a new token once."""
    for name, value in settings.masked().items():
        logger.debug("config %s = %s", name, value, extra={"setting": name, "value": value})
    base = listeners[0].url.removesuffix(API_PATH)
    processes = f"{settings.workers} worker processes" if settings.workers > 1 else "1 process"
    parts = [
        f"analytics-mock {__version__} serving " + " and ".join(one.url for one in listeners),
        f"database {mask_database_url(settings.database_url_text)}",
        processes,
        f"test mail {settings.test_mail_mode}",
    ]
    extra: dict[str, object] = {"urls": [listener.url for listener in listeners]}
    if settings.control_api:
        if settings.control_token is not None:
            guard = "token required"
        elif is_loopback_host(settings.host):
            guard = "open to this machine only"
        else:
            guard = "open to anyone who can reach it: --no-control-token"
        parts.append(f"control API {base}/_mock/ ({guard}), dashboard {base}/_mock/ui")
        extra["control_url"] = f"{base}/_mock/"
        extra["ui_url"] = f"{base}/_mock/ui"
    for listener in listeners:
        if listener.tls is not None:
            kind = "self-signed certificate" if listener.tls.generated else "certificate"
            parts.append(
                f"{kind} {listener.tls.certfile}, SHA-256 fingerprint {listener.tls.fingerprint}"
            )
            extra.update(certfile=str(listener.tls.certfile), sha256=listener.tls.fingerprint)
    logger.info("; ".join(parts), extra=extra)
    if generated_token and settings.control_token is not None:
        # The only place the token is ever written: like Jupyter's, once, to the console.
        logger.warning(
            "The control API %s/_mock/ is reachable from other machines, so it needs a token. "
            "Generated for this run (set --control-token or ANALYTICS_MOCK_CONTROL_TOKEN to "
            "choose it):\n\n    Authorization: Bearer %s\n",
            base,
            settings.control_token.get_secret_value(),
        )


@dataclass
class _Worker:
    process: BaseProcess
    started: float = field(default_factory=time.monotonic)


def _supervise(
    settings: Settings, listeners: list[Listener], identity: Identity | None = None
) -> None:
    """Keep `settings.workers` workers serving until SIGINT or SIGTERM, then stop them all.

    A worker that dies is replaced unless more than `settings.worker_deaths_per_minute` died
    in the last minute: then the server stops, since something is wrong with every worker.
    """
    stopping: list[int] = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda received, _frame: stopping.append(received))
    workers = [_start_worker(listeners, identity) for _ in range(settings.workers)]
    deaths: deque[float] = deque()
    try:
        while not stopping:
            time.sleep(0.2)
            for index, worker in enumerate(workers):
                status = worker.process.exitcode
                if status is None or stopping:
                    continue
                if status == _CANNOT_START:
                    raise StartError(f"a worker process failed to start (exit status {status})")
                now = time.monotonic()
                deaths.append(now)
                while deaths and deaths[0] < now - 60:
                    deaths.popleft()
                if len(deaths) > settings.worker_deaths_per_minute:
                    raise StartError(
                        f"{len(deaths)} worker processes died within a minute "
                        f"(the last with exit status {status}); stopping"
                    )
                logger.warning(
                    "worker process %s ended (exit status %s); starting another",
                    worker.process.pid,
                    status,
                )
                workers[index] = _start_worker(listeners, identity)
    finally:
        # New connections are refused from here on, while the workers finish their calls:
        # the sockets close once the workers close their copies.
        for listener in listeners:
            listener.sock.close()
        _stop_workers(workers)


def _start_worker(listeners: list[Listener], identity: Identity | None) -> _Worker:
    process = multiprocessing.get_context("spawn").Process(
        target=_worker_main,
        args=(listeners, os.getpid(), identity),
        name="analytics-mock-worker",
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


_PR_SET_PDEATHSIG = 1


def follow_parent(parent: int) -> None:
    """End this process (SIGTERM, so calls in flight finish) when `parent` dies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
                # The parent may have died before prctl: then no signal would ever come.
                if os.getppid() != parent:
                    os.kill(os.getpid(), signal.SIGTERM)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(listeners: list[Listener], parent: int, identity: Identity | None = None) -> None:
    """A worker: the app from the environment's settings, served on the parent's sockets.

    `identity`: the SQLite file the parent opened, which the worker serves or refuses.
    """
    follow_parent(parent)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, redact_query=redact_text)
    try:
        app = open_app(file_identity=identity)
    except StartError as exc:
        logger.error("worker process %d cannot start: %s", os.getpid(), exc)
        sys.exit(_CANNOT_START)
    settle_collector()
    asyncio.run(serve_app(app, listeners))
