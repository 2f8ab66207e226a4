"""Measure analytics-mock against a bare ASGI baseline, and against the targets of issue 6.

    python benchmarks/run.py [--postgres-url URL] [--runs 3] [--duration 10] [--quick]
                             [--reference-python OTHER/.venv/bin/python] [--connections 1,16,64]

Run it with the Python that has analytics-mock installed (the project's venv). It needs `wrk`
(installed with apt-get when missing and run as root) and `taskset` for CPU pinning
(util-linux), and uses only 127.0.0.1.

One invocation, `--runs` times over:

- starts `benchmarks/baseline_app.py` (raw ASGI, no framework, no database), the same with
  `--fastapi` (the same work through FastAPI routes, for reading the ratios: not a target) and
  `python -m analytics_mock serve --log-level warning` on a fresh SQLite file (and, with
  `--postgres-url`, on a fresh PostgreSQL schema), one at a time, each in one uvicorn process
  with the same uvicorn options and uvicorn's access log silenced by the warning level;
- pins the server to the first allowed CPU and wrk to the second (when there are two or more);
- times process start to the first 200 of an authenticated GET (polled every 10 ms);
- with `--reference-python`, also starts analytics-mock as installed for that Python (another
  checkout's venv, e.g. today's main) on each database, beside this one: both are up at once
  and each scenario runs on one right after the other (who goes first alternates by run), and
  then on both at once ("under one load": two wrk, each server gets about half of its CPU),
  and it prints each figure's ratio new/reference (the median of the per-run ratios). Under
  one load both servers see the same machine: this machine's speed drifts by up to 1.7x within
  half a second (another tenant), which one after the other puts into the ratios;
- after a warm-up, drives PUT .../mailServerSetting%230 and GET .../EmailServerSettings with
  `wrk -t 1 -c 1|16|64 -d DURATION --latency`, and reads the server's CPU time (utime + stime in
  /proc/PID/stat) around each wrk run and its peak RSS (VmHWM) at the end.

Then, once, in this process: the in-process fixture's `reset()` (median of 50) and a GET list
of page 50 (pageSize 100) over 10,000 stored objects against one stored object (median of 50).

It prints medians over the runs, each with its ratio to the baseline of the same run (the median
of the per-run ratios), and the issue's targets with whether each is met. It reports; it does not
assert: the exit status is 0 when everything could be measured, 2 when something could not run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
AUTH = "Basic " + base64.b64encode(b"system:manager").decode()
LIST_PATH = "/Analytics/v1/objects/EmailServerSettings"
PUT_PATH = LIST_PATH + "/mailServerSetting%230"
PUT_BODY = '{"hostname": "bench.example.com", "portNumber": 2525}'
# wrk's PUTs alternate between this and PUT_BODY, so every PUT changes the stored object: a real
# UPDATE per call. A repeated identical body would change nothing after the first call, and the
# server rightly writes no unchanged row, so it would measure a lighter PUT than clients send.
PUT_BODY_OTHER = '{"hostname": "bench.example.com", "portNumber": 2526}'
CONNECTIONS = [1, 16, 64]
SCENARIOS = [(method, c) for method in ("PUT", "GET") for c in CONNECTIONS]
# A target measured as installed for `--reference-python` is named after its database + this.
REF = "-ref"
# A scenario's key + this: the figure taken with the target and its reference under load at
# the same moment (the machine's speed drifts by half within a second: see the module).
ONE_LOAD = " one load"
# The bounds of issue 20 on new/reference: (label, target, scenario, figure, comparison, bound).
REFERENCE_BOUNDS = [
    ("SQLite PUT c64 req/CPU-s new/ref", "sqlite", "PUT c64", "cpu", ">=", 0.90),
    ("SQLite GET c64 req/CPU-s new/ref", "sqlite", "GET c64", "cpu", ">=", 0.90),
    ("SQLite PUT c1 p50 new/ref", "sqlite", "PUT c1", "p50", "<=", 1.0),
    ("SQLite GET c1 p50 new/ref", "sqlite", "GET c1", "p50", "<=", 1.0),
    ("PostgreSQL PUT c1 p50 new/ref", "postgresql", "PUT c1", "p50", "<=", 1.0),
    ("PostgreSQL GET c1 p50 new/ref", "postgresql", "GET c1", "p50", "<=", 1.0),
]
# Servers measured for comparison only: the raw floor and the same work through FastAPI.
REFERENCES = ("baseline", "fastapi")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Options of uvicorn.Config that decide how requests are served; they must match between the
# baseline and analytics-mock for the comparison to mean anything.
UVICORN_OPTIONS = (
    "loop",
    "http",
    "ws",
    "interface",
    "lifespan",
    "log_config",
    "access_log",
    "proxy_headers",
    "server_header",
    "date_header",
    "limit_concurrency",
    "backlog",
    "timeout_keep_alive",
    "timeout_graceful_shutdown",
)

# wrk writes one machine-readable line at the end; status counts responses >= 400 (wrk's
# "Non-2xx or 3xx responses"), the other errors are socket errors.
LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "status": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
LUA_PUT = f"""
wrk.method = "PUT"
wrk.headers["Authorization"] = "{AUTH}"
wrk.headers["Content-Type"] = "application/json"
local bodies = {{'{PUT_BODY}', '{PUT_BODY_OTHER}'}}
local sent = 0
request = function()
  sent = sent + 1
  return wrk.format(nil, nil, nil, bodies[sent % 2 + 1])
end
"""
LUA_GET = f"""
wrk.method = "GET"
wrk.headers["Authorization"] = "{AUTH}"
"""

# The targets: (label, key in the figures, comparison, threshold, unit).
TARGETS = [
    ("PUT c64 req/CPU-s vs baseline", "put64_cpu_ratio", ">=", 0.25, "x"),
    ("PUT c64 req/CPU-s vs baseline (issue 20)", "put64_cpu_ratio", ">=", 0.10, "x"),
    ("PUT c64 p99", "put64_p99_ms", "<", 50.0, " ms"),
    ("PUT c64 non-2xx (all runs)", "put64_non2xx", "==", 0, ""),
    ("GET c64 req/CPU-s vs baseline", "get64_cpu_ratio", ">=", 0.25, "x"),
    ("start to first 200", "start_s", "<", 1.0, " s"),
    ("peak RSS", "rss_mb", "<", 90.0, " MB"),
    ("fixture reset()", "reset_ms", "<", 20.0, " ms"),
    ("GET list 10k (page 50) / 1 object", "list_ratio", "<", 3.0, "x"),
]


class BenchError(Exception):
    """Something could not run: the benchmark has no figure to report for it."""


# --------------------------------------------------------------------------- processes


@dataclass
class Pinning:
    """Where the server and wrk run: a `taskset` prefix each, empty without two CPUs."""

    server: list[str]
    load: list[str]
    note: str


def pinning() -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if len(cpus) < 2 or taskset is None:
        why = "one CPU" if len(cpus) < 2 else "no taskset"
        return Pinning([], [], f"not pinned ({why})")
    server, load = cpus[0], cpus[1]
    return Pinning(
        [taskset, "-c", str(server)],
        [taskset, "-c", str(load)],
        f"server on CPU {server}, wrk on CPU {load}",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    """This environment without ANALYTICS_MOCK_* (a leaked variable would change the server)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_MOCK_")}


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmHWM in /proc/{pid}/status")


@dataclass
class Server:
    """A server process of one target, started by `start_server`."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    start_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return "\n".join(lines[-15:]) or "(nothing on stderr)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def get_status(port: int, path: str, timeout: float = 2.0) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": AUTH})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start_server(name: str, command: list[str], workdir: Path, pin: Pinning) -> Server:
    """Start `command` (with the server's taskset prefix) and wait for its first 200."""
    port = free_port()
    command = [*pin.server, *[arg.replace("{port}", str(port)) for arg in command]]
    log = workdir / f"{name}.stderr"
    started = time.monotonic()
    with log.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 - our own command line
            command,
            cwd=workdir,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    server = Server(name, process, port, log)
    deadline = started + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise BenchError(
                f"{name} exited with status {process.returncode} before answering:\n"
                + server.log_tail()
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            status = get_status(port, LIST_PATH)
            if status == 200:
                server.start_s = time.monotonic() - started
                return server
            server.stop()
            raise BenchError(f"{name} answered {status} to GET {LIST_PATH}:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            server.stop()
            raise BenchError(f"{name} did not answer within {START_TIMEOUT:.0f} s")
        time.sleep(0.01)


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def per_cpu_s(self) -> float:
        return self.requests / self.cpu_s if self.cpu_s > 0 else float("nan")

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / self.seconds


def wrk_command(
    server: Server,
    method: str,
    connections: int,
    duration: int,
    scripts: dict[str, Path],
    pin: Pinning,
) -> list[str]:
    path = PUT_PATH if method == "PUT" else LIST_PATH
    return [
        *pin.load,
        "wrk",
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(scripts[method]),
        server.url + path,
    ]


def run_wrk(
    servers: list[Server],
    method: str,
    connections: int,
    duration: int,
    scripts: dict[str, Path],
    pin: Pinning,
) -> list[WrkResult]:
    """The same load on every server of `servers` at once: each sees the machine's speed then."""
    before = [cpu_seconds(server.process.pid) for server in servers]
    processes = [
        subprocess.Popen(  # noqa: S603 - our own command line
            wrk_command(server, method, connections, duration, scripts, pin),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for server in servers
    ]
    try:
        outputs = [process.communicate(timeout=duration + 60) for process in processes]
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        raise BenchError(
            f"wrk against {', '.join(s.name for s in servers)} did not finish"
        ) from None
    cpu = [cpu_seconds(s.process.pid) - b for s, b in zip(servers, before, strict=True)]
    return [
        wrk_result(server, process.returncode, out, err, used)
        for server, process, (out, err), used in zip(servers, processes, outputs, cpu, strict=True)
    ]


def wrk_result(server: Server, returncode: int, stdout: str, stderr: str, cpu: float) -> WrkResult:
    """The figures of one finished wrk run against `server`, which used `cpu` seconds."""
    line = next((x for x in stdout.splitlines() if x.startswith("BENCH ")), None)
    if returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({returncode}):\n{stdout}\n{stderr}")
    if server.process.poll() is not None:
        raise BenchError(f"{server.name} died under load:\n{server.log_tail()}")
    data = json.loads(line[len("BENCH ") :])
    if data["requests"] == 0:
        raise BenchError(f"wrk made no request to {server.name}:\n{stdout}")
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        non2xx=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        cpu_s=cpu,
    )


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One server under test: how to start it on a fresh database, and its figures."""

    name: str
    command: Callable[[str | None, Path], list[str]]
    fresh_database: Callable[[Path], contextlib.AbstractContextManager[str | None]]
    runs: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def no_database(_workdir: Path) -> Iterator[str | None]:
    yield None


@contextlib.contextmanager
def sqlite_database(workdir: Path) -> Iterator[str | None]:
    yield f"sqlite:///{workdir / 'analytics-mock.db'}"


def postgres_database(admin_url: str) -> Callable[[Path], contextlib.AbstractContextManager[str]]:
    @contextlib.contextmanager
    def fresh(_workdir: Path) -> Iterator[str]:
        with fresh_postgres_schema(admin_url) as url:
            yield url

    return fresh


@contextlib.contextmanager
def fresh_postgres_schema(admin_url: str) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema (as tests/conftest.py), dropped after."""
    from sqlalchemy import create_engine, text  # noqa: PLC0415
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    schema = f"bench_{uuid.uuid4().hex[:16]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise BenchError(f"cannot create a schema on {make_url(admin_url)!r}: {reason}") from None
    url = make_url(admin_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def mock_command(python: str) -> Callable[[str | None, Path], list[str]]:
    """analytics-mock's command line, as installed for `python`."""
    return lambda database, workdir: _mock_command(python, database, workdir)


def _mock_command(python: str, database: str | None, workdir: Path) -> list[str]:
    assert database is not None
    return [
        python,
        "-m",
        "analytics_mock",
        "serve",
        "--port",
        "{port}",
        "--database-url",
        database,
        "--log-level",
        "warning",
        "--secret-key-file",
        str(workdir / "secret.key"),
    ]


def baseline_command(
    proto: int, nodelay: bool, *, fastapi: bool = False
) -> Callable[[str | None, Path], list[str]]:
    """The baseline's command line, its listening socket made as analytics-mock makes its own."""
    script = str(HERE / "baseline_app.py")
    command = [sys.executable, script, "--port", "{port}", "--log-level", "warning"]
    command += ["--socket-proto", str(proto), *(["--nodelay"] if nodelay else [])]
    command += ["--fastapi"] if fastapi else []
    return lambda _database, _workdir: command


def socket_options() -> tuple[int, bool, str]:
    """How `analytics_mock.serving._bind` makes the listening socket: proto, TCP_NODELAY, a note.

    asyncio sets TCP_NODELAY on accepted connections only when their proto is IPPROTO_TCP; a
    socket made with proto 0 keeps Nagle's algorithm, and a response written in two pieces
    (headers, then body) then waits for the client's delayed ACK (about 40 ms on Linux).
    """
    try:
        from analytics_mock import serving  # noqa: PLC0415

        sock = serving._bind(HOST, 0)
    except Exception as exc:  # a private helper may have moved: say so, go on
        return 0, False, f"could not read analytics-mock's socket options ({exc!r}); proto 0"
    with sock:
        proto = sock.proto
        nodelay = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    effective = proto == socket.IPPROTO_TCP or nodelay
    note = (
        f"analytics-mock's listening socket: proto {proto}, TCP_NODELAY {int(nodelay)} "
        f"(copied to the baseline): accepted connections "
        + ("get TCP_NODELAY" if effective else "keep Nagle's algorithm (no TCP_NODELAY)")
    )
    return proto, nodelay, note


def keepalive_latency_ms(port: int, count: int = 20) -> float:
    """Median time of a GET on one kept-alive connection, nothing else running."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    samples = []
    try:
        for _ in range(count + 2):
            started = time.perf_counter()
            conn.request("GET", LIST_PATH, headers={"Authorization": AUTH})
            response = conn.getresponse()
            response.read()
            samples.append(time.perf_counter() - started)
            if response.status != 200:
                raise BenchError(f"GET {LIST_PATH} answered {response.status}")
    finally:
        conn.close()
    return median_ms(samples[2:])


def measure_together(
    group: list[Target],
    args: argparse.Namespace,
    scripts: dict[str, Path],
    pin: Pinning,
    root: Path,
) -> list[dict[str, Any]]:
    """One run of a target and its reference: start times, the wrk scenarios, peak RSS.

    Both servers are up at once, each on its own fresh database, and every scenario runs on
    one right after the other, so the two figures of a ratio are seconds apart, not the length
    of a whole target's run: this machine's speed drifts over tens of seconds. The caller
    alternates the order from run to run.
    """
    with contextlib.ExitStack() as stack:
        servers: list[Server] = []
        for target in group:
            workdir = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=root))
            url = stack.enter_context(target.fresh_database(workdir))
            server = start_server(target.name, target.command(url, workdir), workdir, pin)
            stack.callback(_stop_and_report, server)
            servers.append(server)
        figures: list[dict[str, Any]] = [{"start_s": server.start_s} for server in servers]
        for server, figure in zip(servers, figures, strict=True):
            figure["keepalive_ms"] = keepalive_latency_ms(server.port)
        for server in servers:
            for method in ("PUT", "GET"):
                run_wrk([server], method, CONNECTIONS[-1], args.warmup, scripts, pin)
        for method, connections in SCENARIOS:
            for server, figure in zip(servers, figures, strict=True):
                [result] = run_wrk([server], method, connections, args.duration, scripts, pin)
                figure[f"{method} c{connections}"] = result
                print(
                    f"    {server.name:10} {method} c{connections:<3} {result.rps:8.0f} req/s "
                    f"{result.per_cpu_s:8.0f} req/CPU-s  p50 {result.p50_ms:7.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  non-2xx {result.non2xx}  "
                    f"server CPU {result.cpu_share:4.0%}",
                    flush=True,
                )
        if len(servers) > 1:
            for method, connections in SCENARIOS:
                results = run_wrk(servers, method, connections, args.duration, scripts, pin)
                for server, figure, result in zip(servers, figures, results, strict=True):
                    figure[f"{method} c{connections}{ONE_LOAD}"] = result
                    print(
                        f"    {server.name:10} {method} c{connections:<3} under one load "
                        f"{result.per_cpu_s:8.0f} req/CPU-s  p50 {result.p50_ms:7.2f} ms",
                        flush=True,
                    )
        for server, figure in zip(servers, figures, strict=True):
            figure["rss_mb"] = peak_rss_mb(server.process.pid)
            figure["affinity"] = sorted(os.sched_getaffinity(server.process.pid))
            print(
                f"    {server.name:10} start to first 200 {figure['start_s']:.3f} s, "
                f"peak RSS {figure['rss_mb']:.1f} MB, "
                f"1-connection GET {figure['keepalive_ms']:.2f} ms",
                flush=True,
            )
    return figures


def _stop_and_report(server: Server) -> None:
    server.stop()
    if server.process.returncode not in (0, -signal.SIGTERM):
        print(f"    note: {server.name} stopped with status {server.process.returncode}")


# --------------------------------------------------------------------------- in-process


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(call: Callable[[], Any], count: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def in_process_figures(database_url: str, workdir: Path, samples: int) -> dict[str, float]:
    """The `analytics_mock` fixture's costs: build + close, reset(), GET list over 10k objects."""
    from analytics_mock.testing import AnalyticsMock, isolated_settings  # noqa: PLC0415

    def settings(url: str) -> Any:
        # As the pytest plugin's fixtures (host, port 0, capture mode), with room for 10k objects.
        return isolated_settings(
            host=HOST,
            port=0,
            database_url=url,
            secret_key=uuid.uuid4().hex,
            test_mail_mode="capture",
            max_body_size=64 * 1024 * 1024,
        )

    figures: dict[str, float] = {}
    if database_url.startswith("sqlite"):
        # What the fixture does per test on its default database: a fresh SQLite file.
        builds = []
        for index in range(10):
            started = time.perf_counter()
            AnalyticsMock(settings(f"sqlite:///{workdir / f'fresh-{index}.db'}")).close()
            builds.append(time.perf_counter() - started)
        figures["build_ms"] = median_ms(builds)

    with AnalyticsMock(settings(database_url)) as mock:
        client = mock.client

        def dirty_then_reset() -> float:
            # A test changed the store; the reset that follows is what is timed.
            check(client.put(PUT_PATH, content=PUT_BODY, headers=JSON), 200)
            started = time.perf_counter()
            mock.reset()
            return time.perf_counter() - started

        for _ in range(5):
            dirty_then_reset()
        figures["reset_ms"] = median_ms([dirty_then_reset() for _ in range(samples)])

        one = {"page": 1, "pageSize": 100}
        figures["list1_ms"] = median_ms(timed(lambda: get_list(client, one, 1, 1), samples))

        state = mock.state
        state["settings"] = [
            {"instanceID": f"mailServerSetting#{i}", "hostname": f"host{i}.example.com"}
            for i in range(10_000)
        ]
        started = time.perf_counter()
        mock.state = state
        figures["load10k_s"] = time.perf_counter() - started
        page50 = {"page": 50, "pageSize": 100}
        figures["list10k_ms"] = median_ms(
            timed(lambda: get_list(client, page50, 100, 10_000), samples)
        )
    figures["list_ratio"] = figures["list10k_ms"] / figures["list1_ms"]
    return figures


JSON = {"Content-Type": "application/json"}


def check(response: Any, status: int) -> Any:
    if response.status_code != status:
        raise BenchError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response


def get_list(client: Any, params: dict[str, int], size: int, count: int) -> None:
    body = check(client.get(LIST_PATH, params=params), 200).json()
    if len(body["data"]) != size or body["count"] != count:
        raise BenchError(f"GET list {params}: {len(body['data'])} objects of {body['count']}")


# --------------------------------------------------------------------------- checks


def _option(config: Any, name: str) -> Any:
    value = getattr(config, name)
    if name == "http" and isinstance(value, type):
        # analytics-mock's protocol is a subclass of uvicorn's httptools one: the same parser.
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

        return "httptools" if issubclass(value, HttpToolsProtocol) else value
    return value


def uvicorn_options_note() -> str:
    """Whether the baseline gets the same uvicorn options as `analytics_mock.serving`."""
    sys.path.insert(0, str(HERE))
    try:
        import baseline_app  # noqa: PLC0415
        from starlette.types import ASGIApp  # noqa: PLC0415

        from analytics_mock import serving  # noqa: PLC0415
        from analytics_mock.http_protocol import EdgeLimits  # noqa: PLC0415
        from analytics_mock.settings import Settings  # noqa: PLC0415

        settings = Settings()
        no_app = cast(ASGIApp, None)  # only the options are compared: no app is loaded
        with socket.socket() as sock:
            mock_config = serving._config(
                no_app, serving.Listener(sock), settings, EdgeLimits.from_settings(settings)
            )
        base_config = baseline_app.make_config()
    except Exception as exc:  # a private helper may have moved: say so, go on
        return f"could not compare uvicorn options ({type(exc).__name__}: {exc})"
    finally:
        sys.path.remove(str(HERE))
    differ = [
        f"{name}: baseline {getattr(base_config, name)!r}, mock {getattr(mock_config, name)!r}"
        for name in UVICORN_OPTIONS
        if _option(base_config, name) != _option(mock_config, name)
    ]
    if differ:
        return "WARNING: uvicorn options differ: " + "; ".join(differ)
    return (
        f"same uvicorn options (http={base_config.http}, loop={base_config.loop}, "
        f"access_log={base_config.access_log} but below the warning level in both)"
    )


def install_wrk() -> None:
    """Install wrk from the system's packages (Debian's apt-get, as root), or say why not."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise BenchError("wrk is not on the PATH and cannot be installed here: apt-get install wrk")
    print("wrk is missing: installing it with apt-get", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(  # noqa: S603 - our own command line
            command, capture_output=True, text=True, env=env, check=False
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise BenchError(f"{' '.join(command)} failed: {' '.join(tail)}")
    if shutil.which("wrk") is None:
        raise BenchError("apt-get installed no wrk on the PATH")


def preflight(postgres_url: str | None) -> None:
    """Fail before any measurement when a tool, the package or the PostgreSQL server is missing."""
    if shutil.which("wrk") is None:
        install_wrk()
    try:
        import analytics_mock  # noqa: F401, PLC0415
    except ImportError:
        raise BenchError(f"{sys.executable} cannot import analytics_mock: use the venv") from None
    if postgres_url:
        with fresh_postgres_schema(postgres_url):
            pass


# --------------------------------------------------------------------------- report


def med(values: list[float]) -> float:
    return statistics.median(values)


def ratio_text(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def median_ratio(results: list[WrkResult], bases: list[WrkResult], attr: str) -> float:
    """The median over runs of result / baseline of the same run (NaN if a baseline is 0)."""
    pairs = [(getattr(r, attr), getattr(b, attr)) for r, b in zip(results, bases, strict=True)]
    if any(b == 0 for _, b in pairs):
        return float("nan")
    return med([r / b for r, b in pairs])


def summarise(targets: list[Target]) -> dict[str, dict[str, Any]]:
    """Medians over the runs and the median of the per-run ratios to the baseline."""
    baseline = targets[0]
    summary: dict[str, dict[str, Any]] = {}
    for target in targets:
        rows: dict[str, Any] = {}
        for method, connections in SCENARIOS:
            key = f"{method} c{connections}"
            results = [run[key] for run in target.runs]
            bases: list[WrkResult] = [run[key] for run in baseline.runs]

            rows[key] = {
                "rps": med([r.rps for r in results]),
                "rps_x": median_ratio(results, bases, "rps"),
                "cpu": med([r.per_cpu_s for r in results]),
                "cpu_x": median_ratio(results, bases, "per_cpu_s"),
                "p50": med([r.p50_ms for r in results]),
                "p50_x": median_ratio(results, bases, "p50_ms"),
                "p99": med([r.p99_ms for r in results]),
                "p99_x": median_ratio(results, bases, "p99_ms"),
                "non2xx": sum(r.non2xx for r in results),
                "socket_errors": sum(r.socket_errors for r in results),
                "share": med([r.cpu_share for r in results]),
            }
        for key in ("start_s", "rss_mb", "keepalive_ms"):
            rows[key] = med([run[key] for run in target.runs])
            rows[key + "_x"] = med(
                [run[key] / base[key] for run, base in zip(target.runs, baseline.runs, strict=True)]
            )
        summary[target.name] = rows
    return summary


def print_tables(summary: dict[str, dict[str, Any]], header: str) -> None:
    print(f"\n== Load: medians over {header}; (x) = ratio to the baseline in the same run")
    print(
        f"{'scenario':9} {'server':10} {'req/s':>14} {'req/CPU-s':>15} {'p50 ms':>15} "
        f"{'p99 ms':>15} {'non-2xx':>8} {'sock err':>8} {'srv CPU':>7}"
    )
    for method, connections in SCENARIOS:
        key = f"{method} c{connections}"
        for name, rows in summary.items():
            row = rows[key]
            print(
                f"{key:9} {name:10} "
                f"{row['rps']:7.0f} {ratio_text(row['rps_x']):>6} "
                f"{row['cpu']:8.0f} {ratio_text(row['cpu_x']):>6} "
                f"{row['p50']:8.2f} {ratio_text(row['p50_x']):>6} "
                f"{row['p99']:8.2f} {ratio_text(row['p99_x']):>6} "
                f"{row['non2xx']:8d} {row['socket_errors']:8d} {row['share']:7.0%}"
            )
    print("(non-2xx and socket errors: sum over the runs; srv CPU: server CPU time / wall time)")
    print(
        f"\n{'server':10} {'start to first 200':>24} {'peak RSS (VmHWM)':>24} "
        f"{'GET on 1 idle conn.':>24}"
    )
    for name, rows in summary.items():
        print(
            f"{name:10} {rows['start_s']:15.3f} s {ratio_text(rows['start_s_x']):>6} "
            f"{rows['rss_mb']:14.1f} MB {ratio_text(rows['rss_mb_x']):>6} "
            f"{rows['keepalive_ms']:14.2f} ms {ratio_text(rows['keepalive_ms_x']):>6}"
        )
    print("(GET on 1 idle conn.: median of 20 sequential GETs on one kept-alive connection)")


def print_in_process(name: str, figures: dict[str, float], samples: int) -> None:
    print(f"\n== In-process fixture (AnalyticsMock) on {name}, median of {samples}")
    if "build_ms" in figures:
        print(
            f"AnalyticsMock(...) + close() on a fresh SQLite file (median of 10): "
            f"{figures['build_ms']:.1f} ms"
        )
    print(f"reset() after a PUT:                         {figures['reset_ms']:.2f} ms")
    print(f"GET list, 1 object, page 1 of pageSize 100:  {figures['list1_ms']:.2f} ms")
    print(
        f"GET list, 10,000 objects, page 50 of 100:    {figures['list10k_ms']:.2f} ms "
        f"(ratio {figures['list_ratio']:.2f}; loading them by PUT /_mock/state took "
        f"{figures['load10k_s']:.2f} s)"
    )


def print_targets(
    summary: dict[str, dict[str, Any]], in_process: dict[str, dict[str, float]]
) -> None:
    print("\n== Targets (issue 6)")
    names = [name for name in summary if name not in REFERENCES and not name.endswith(REF)]
    print(f"{'target':40} " + " ".join(f"{name:>22}" for name in names))
    for label, key, op, threshold, unit in TARGETS:
        cells = []
        for name in names:
            value = target_value(key, summary[name], in_process.get(name))
            if value is None:
                cells.append(f"{'-':>22}")
                continue
            met = {">=": value >= threshold, "<": value < threshold, "==": value == threshold}[op]
            shown = f"{value:.0f}" if key == "put64_non2xx" else f"{value:.2f}"
            cells.append(f"{shown + unit + (' met' if met else ' MISSED'):>22}")
        goal = f"{op} {threshold:g}{unit}"
        print(f"{label + ' ' + goal:40} " + " ".join(cells))


def target_value(
    key: str, rows: dict[str, Any], in_process: dict[str, float] | None
) -> float | None:
    values = {
        "put64_cpu_ratio": rows["PUT c64"]["cpu_x"],
        "put64_p99_ms": rows["PUT c64"]["p99"],
        "put64_non2xx": rows["PUT c64"]["non2xx"],
        "get64_cpu_ratio": rows["GET c64"]["cpu_x"],
        "start_s": rows["start_s"],
        "rss_mb": rows["rss_mb"],
    }
    if key in values:
        return float(values[key])
    return None if in_process is None else in_process[key]


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="analytics-mock against a bare ASGI baseline")
    parser.add_argument("--postgres-url", help="also measure analytics-mock on PostgreSQL")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per method")
    parser.add_argument("--samples", type=int, default=50, help="in-process samples (50)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 run of 3 s")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--reference-python",
        help="also measure analytics-mock as installed for this Python, e.g. another checkout's "
        "venv; prints the ratios new/reference",
    )
    parser.add_argument(
        "--connections", default="1,16,64", help="wrk connection counts, comma separated"
    )
    args = parser.parse_args(argv)
    CONNECTIONS[:] = [int(c) for c in args.connections.split(",")]
    SCENARIOS[:] = [(method, c) for method in ("PUT", "GET") for c in CONNECTIONS]
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 3, 1
    if args.runs < 1 or args.duration < 1 or args.warmup < 1 or args.samples < 1:
        parser.error("--runs, --duration, --warmup and --samples must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        preflight(args.postgres_url)
        pin = pinning()
        with tempfile.TemporaryDirectory(prefix="analytics-mock-bench-") as tmp:
            return benchmark(args, pin, Path(tmp))
    except BenchError as exc:
        print(f"\nbenchmark could not run: {exc}", file=sys.stderr)
        return 2


def benchmark(args: argparse.Namespace, pin: Pinning, root: Path) -> int:
    scripts = {"PUT": root / "put.lua", "GET": root / "get.lua"}
    scripts["PUT"].write_text(LUA_PUT + LUA_DONE)
    scripts["GET"].write_text(LUA_GET + LUA_DONE)
    proto, nodelay, socket_note = socket_options()
    targets = [
        Target("baseline", baseline_command(proto, nodelay), no_database),
        # Not a target: the framework's own share, for reading the ratios below.
        Target("fastapi", baseline_command(proto, nodelay, fastapi=True), no_database),
        Target("sqlite", mock_command(sys.executable), sqlite_database),
    ]
    reference = args.reference_python
    if reference:
        targets.append(Target("sqlite" + REF, mock_command(reference), sqlite_database))
    if args.postgres_url:
        fresh = postgres_database(args.postgres_url)
        targets.append(Target("postgresql", mock_command(sys.executable), fresh))
        if reference:
            targets.append(Target("postgresql" + REF, mock_command(reference), fresh))
    header = (
        f"{args.runs} run(s) of {args.duration} s per scenario, wrk -t 1 --latency "
        f"--timeout 10s after {args.warmup} s warm-up per method; {pin.note}"
    )
    print(f"analytics-mock benchmark: {header}")
    print(f"{os.cpu_count()} CPUs; load average at start {load_average()}")
    print(uvicorn_options_note())
    print(socket_note, flush=True)

    # A target and its reference are measured together, scenario by scenario; who goes first
    # alternates from run to run.
    by_name = {target.name: target for target in targets}
    groups = [
        [target, *([by_name[target.name + REF]] if target.name + REF in by_name else [])]
        for target in targets
        if not target.name.endswith(REF)
    ]
    for run in range(1, args.runs + 1):
        print(f"  run {run}/{args.runs}", flush=True)
        for group in groups:
            ordered = group if run % 2 else group[::-1]
            for target, figures in zip(
                ordered, measure_together(ordered, args, scripts, pin, root), strict=True
            ):
                target.runs.append(figures)

    in_process: dict[str, dict[str, float]] = {}
    print("  in-process fixture", flush=True)
    sqlite_dir = Path(tempfile.mkdtemp(prefix="fixture-", dir=root))
    in_process["sqlite"] = in_process_figures(
        f"sqlite:///{sqlite_dir / 'analytics-mock.db'}", sqlite_dir, args.samples
    )
    if args.postgres_url:
        with fresh_postgres_schema(args.postgres_url) as url:
            in_process["postgresql"] = in_process_figures(url, sqlite_dir, args.samples)

    summary = summarise(targets)
    print_tables(summary, header)
    for name, figures in in_process.items():
        print_in_process(name, figures, args.samples)
    print_targets(summary, in_process)
    ratios = reference_ratios(targets) if reference else {}
    if ratios:
        print_reference(ratios, reference)
    print(f"\nload average at end {load_average()} (other processes share this machine)")
    if args.json:
        figures = {"summary": summary, "in_process": in_process, "new_vs_reference": ratios}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def reference_ratios(targets: list[Target]) -> dict[str, dict[str, dict[str, float]]]:
    """For each database measured both ways: per scenario, new/reference medians of run ratios."""
    by_name = {target.name: target for target in targets}
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for name, target in by_name.items():
        ref = by_name.get(name + REF)
        if ref is None:
            continue
        rows: dict[str, dict[str, float]] = {}
        for method, connections in SCENARIOS:
            key = f"{method} c{connections}"
            new, old = [run[key] for run in target.runs], [run[key] for run in ref.runs]
            rows[key] = {
                attr: median_ratio(new, old, prop)
                for attr, prop in (("rps", "rps"), ("cpu", "per_cpu_s"), ("p50", "p50_ms"))
            }
            rows[key]["p99"] = median_ratio(new, old, "p99_ms")
            together = key + ONE_LOAD
            if all(together in run for run in (*target.runs, *ref.runs)):
                new, old = (
                    [run[together] for run in target.runs],
                    [run[together] for run in ref.runs],
                )
                rows[together] = {
                    attr: median_ratio(new, old, prop)
                    for attr, prop in (("cpu", "per_cpu_s"), ("p50", "p50_ms"), ("p99", "p99_ms"))
                }
        rows["GET 1 idle conn."] = {
            "p50": med(
                [
                    a["keepalive_ms"] / b["keepalive_ms"]
                    for a, b in zip(target.runs, ref.runs, strict=True)
                ]
            )
        }
        ratios[name] = rows
    return ratios


def print_reference(ratios: dict[str, dict[str, dict[str, float]]], reference: str) -> None:
    print(f"\n== New / reference ({reference}): medians of the per-run ratios")
    print(f"{'scenario':18} {'server':10} {'req/s':>7} {'req/CPU-s':>10} {'p50':>7} {'p99':>7}")
    for name, rows in ratios.items():
        for key, row in rows.items():
            cells = [ratio_text(row.get(attr, math.nan)) for attr in ("rps", "cpu", "p50", "p99")]
            print(f"{key:18} {name:10} {cells[0]:>7} {cells[1]:>10} {cells[2]:>7} {cells[3]:>7}")
    print("\n== Bounds of issue 20 (new/reference): one after the other | under one load")
    for label, name, key, attr, op, bound in REFERENCE_BOUNDS:
        cells = []
        for scenario in (key, key + ONE_LOAD):
            value = ratios.get(name, {}).get(scenario, {}).get(attr)
            if value is None:
                cells.append(f"{'-':>14}")
                continue
            met = value >= bound if op == ">=" else value <= bound
            cells.append(f"{value:6.2f}x {'met' if met else 'MISSED':>6}")
        if any(cell.strip() != "-" for cell in cells):
            print(f"{label + f' {op} {bound:g}':48} {cells[0]} | {cells[1]}")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    sys.exit(main())
