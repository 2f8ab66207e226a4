"""pytest plugin: the emulator as fixtures, for projects that test an Analyzer client.

Installing analytics-mock registers it (entry point `analytics_mock` in `pytest11`). Importing
it is cheap: FastAPI, SQLAlchemy, uvicorn and httpx load only when a test uses a fixture.
docs/pytest-plugin.md is the user's guide.

Fixtures (see `analytics_mock.testing` for every attribute):

- `analytics_mock` -> `AnalyticsMock`: an emulator inside the test process. `client` is a sync
  `httpx.Client` logged in as system/manager; `transport`, `async_transport`, `async_client()`
  serve clients of your own, with `url` ("http://analytics-mock.invalid", which only the
  transports reach).
- `analytics_mock_server` -> `AnalyticsMockServer`: a real uvicorn server on 127.0.0.1 (a port
  the kernel chose) in a background thread; `url`/`base_url` for code that opens its own
  connections, `client` as above.

Each configuration (the session's, or a test's `@pytest.mark.analytics_mock(...)`) gets one
emulator, resp. one server, for the whole session, over its own SQLite file; each test starts
from a reset of it, made in-process, that first fences out the calls of earlier tests.

Both record test mails without sending them (test-mail mode `capture`), ignore the
`ANALYTICS_MOCK_*` environment, and carry the `/_mock/` helpers of `MockControls`.

Options, on the command line or in the ini file:

- `--analytics-mock-seed-file PATH` / `analytics_mock_seed_file`: the seed (JSON or YAML with
  `settings` and `users`) both fixtures start from and reset to. A relative path is taken from
  the invocation directory on the command line, from the ini file's directory in the ini file.
- `--analytics-mock-database-url URL` / `analytics_mock_database_url`: a SQLite or PostgreSQL
  URL used instead of the fresh SQLite files; `{worker}` in it is replaced by the
  pytest-xdist worker id ("master" without xdist). Both fixtures then use that one database.
- `--analytics-mock-coverage`: at the end, which emulated operations, statuses and message IDs
  the suite's calls exercised, and which they never did.
- `--analytics-mock-pause-on-failure` (command line only): when a test that uses
  `analytics_mock_server` fails, print its dashboard's URL (`ui_url`) and keep the server, as
  the test left it, until Enter is pressed. Without a terminal to read from, it goes on.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import pytest
except ModuleNotFoundError as error:  # pragma: no cover - pytest loads this module itself
    raise ModuleNotFoundError(
        "analytics-mock's pytest plugin needs pytest: pip install 'analytics-mock[pytest]'",
        name=error.name,
    ) from error

from analytics_mock.testing import (
    AnalyticsMock,
    AnalyticsMockServer,
    Emulator,
    ServerThread,
    isolated_settings,
)

if TYPE_CHECKING:
    from analytics_mock.settings import Settings
    from analytics_mock.testing.coverage import CoverageRecorder

SEED_FILE = "analytics_mock_seed_file"
DATABASE_URL = "analytics_mock_database_url"
PAUSE_ON_FAILURE = "analytics_mock_pause_on_failure"
COVERAGE = "analytics_mock_coverage"
MARKER = "analytics_mock"
# Marker arguments that are not `serve` options: written to a file and given as one.
MARKER_FILES = {"users": "users_file", "seed": "seed_file"}
# Chosen by the fixtures, whatever a marker says: nothing listens beyond the test's loopback.
FIXED = {"host", "port"}
WORKER_OUTPUT = "analytics_mock_coverage"
_RECORDER: pytest.StashKey[CoverageRecorder] = pytest.StashKey()


def pytest_addoption(parser: pytest.Parser) -> None:
    """The two options, each on the command line and in the ini file."""
    group = parser.getgroup("analytics-mock", "analytics-mock emulator fixtures")
    group.addoption(
        "--analytics-mock-seed-file",
        dest=SEED_FILE,
        metavar="PATH",
        help="seed file (JSON or YAML: settings, users) the emulator starts from and resets to",
    )
    group.addoption(
        "--analytics-mock-database-url",
        dest=DATABASE_URL,
        metavar="URL",
        help="SQLite or PostgreSQL URL for the emulator instead of fresh SQLite files; "
        "{worker} is replaced by the pytest-xdist worker id",
    )
    group.addoption(
        "--analytics-mock-coverage",
        dest=COVERAGE,
        action="store_true",
        default=False,
        help="report which emulated operations, statuses and message IDs the tests exercised",
    )
    group.addoption(
        "--analytics-mock-pause-on-failure",
        dest=PAUSE_ON_FAILURE,
        action="store_true",
        help="after a failing test, keep analytics_mock_server up until Enter (see its ui_url)",
    )
    parser.addini(SEED_FILE, "seed file for the analytics-mock fixtures", default="")
    parser.addini(DATABASE_URL, "database URL for the analytics-mock fixtures", default="")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker; start the coverage record when asked for."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**settings): this test's emulator settings (any `serve` option in "
        "snake_case, users=[...], seed={...}) for both analytics-mock fixtures",
    )
    if config.getoption(COVERAGE, default=False):
        from analytics_mock.testing.coverage import CoverageRecorder  # noqa: PLC0415

        config.stash[_RECORDER] = CoverageRecorder()


def worker_id(config: pytest.Config) -> str:
    """The pytest-xdist worker id ("gw0", ...), or "master" outside xdist (as xdist names it)."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    return str(workerinput["workerid"]) if workerinput else "master"


@dataclass(frozen=True)
class Options:
    """The fixtures' configuration for this session."""

    seed_file: Path | None
    database_url: str | None
    secret_key: str

    @classmethod
    def from_config(cls, config: pytest.Config) -> Options:
        """The command line wins over the ini file."""
        seed: Path | None = None
        if value := config.getoption(SEED_FILE):
            seed = config.invocation_params.dir / value
        elif value := config.getini(SEED_FILE):
            seed = (config.inipath.parent if config.inipath else config.rootpath) / value
        url = config.getoption(DATABASE_URL) or config.getini(DATABASE_URL) or None
        if url is not None:
            url = url.replace("{worker}", worker_id(config))
        return cls(seed_file=seed, database_url=url, secret_key=secrets.token_urlsafe(32))

    def settings(self, fresh_directory: Path, **overrides: Any) -> Settings:
        """Settings over the configured database, or a new SQLite file in `fresh_directory`."""
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "database_url": self.database_url
            or f"sqlite:///{fresh_directory / 'analytics-mock.db'}",
            "seed_file": self.seed_file,
            "secret_key": self.secret_key,
            "test_mail_mode": "capture",
        }
        if not self.database_url:
            # A file of this session only: a crash may lose it whole, so no fsync per commit.
            values["sqlite_synchronous"] = "OFF"
        values.update(overrides)
        return isolated_settings(**values)


def marker_settings(item: pytest.Item) -> dict[str, Any]:
    """The test's `@pytest.mark.analytics_mock(...)` arguments (the closest marker wins)."""
    from analytics_mock.settings import Settings  # noqa: PLC0415

    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return {}
    if marker.args:
        raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
    unknown = sorted(
        name
        for name in marker.kwargs
        if name in FIXED or (name not in Settings.model_fields and name not in MARKER_FILES)
    )
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.{MARKER}: unknown or fixed setting(s) {', '.join(unknown)}; "
            "give `serve` options in snake_case, users=[...] or seed={...}"
        )
    return dict(marker.kwargs)


@dataclass
class Pool:
    """One emulator and one server per configuration, for the whole session."""

    options: Options
    directory: Path
    wrap: Any = None
    emulators: dict[str, Emulator] = field(default_factory=dict)
    servers: dict[str, ServerThread] = field(default_factory=dict)

    @staticmethod
    def key(kind: str, marked: dict[str, Any]) -> str:
        """One name per fixture kind and marker arguments."""
        text = json.dumps([kind, marked], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _settings(self, key: str, marked: dict[str, Any]) -> Settings:
        place = self.directory / key
        place.mkdir(exist_ok=True)
        overrides = dict(marked)
        for name, setting in MARKER_FILES.items():
            if name in overrides:
                document = overrides.pop(name)
                if name == "users":
                    document = {"users": document}
                path = place / f"{name}.json"
                path.write_text(json.dumps(document))
                overrides[setting] = path
        return self.options.settings(place, **overrides)

    def emulator(self, marked: dict[str, Any]) -> tuple[Emulator, bool]:
        """The emulator of this configuration, and whether it was built just now."""
        key = self.key("in-process", marked) if marked else "in-process"
        if key in self.emulators:
            return self.emulators[key], False
        built = Emulator(self._settings(key, marked), wrap=self.wrap)
        self.emulators[key] = built
        return built, True

    def server(self, marked: dict[str, Any]) -> tuple[ServerThread, bool]:
        """The server of this configuration, and whether it was started just now."""
        key = self.key("server", marked) if marked else "server"
        if key in self.servers:
            return self.servers[key], False
        started = ServerThread(self._settings(key, marked), wrap=self.wrap)
        self.servers[key] = started
        return started, True

    def close(self) -> None:
        """Stop every server and release every emulator."""
        errors: list[BaseException] = []
        for server in self.servers.values():
            try:
                server.stop()
            except Exception as exc:  # stop the others first
                errors.append(exc)
        for emulator in self.emulators.values():
            emulator.close()
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def _analytics_mock_options(pytestconfig: pytest.Config) -> Options:
    return Options.from_config(pytestconfig)


@pytest.fixture(scope="session")
def _analytics_mock_pool(
    _analytics_mock_options: Options,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[Pool]:
    recorder = pytestconfig.stash.get(_RECORDER, None)
    pool = Pool(
        _analytics_mock_options,
        tmp_path_factory.mktemp("analytics-mock"),
        wrap=recorder.wrap if recorder is not None else None,
    )
    yield pool
    pool.close()


@pytest.fixture
def analytics_mock(
    _analytics_mock_pool: Pool, request: pytest.FixtureRequest
) -> Iterator[AnalyticsMock]:
    """An in-process emulator, reset to the seed (or built) for this test."""
    emulator, fresh = _analytics_mock_pool.emulator(marker_settings(request.node))
    if not fresh or _analytics_mock_pool.options.database_url:
        emulator.reset()
    mock = AnalyticsMock(emulator=emulator)
    try:
        yield mock
    finally:
        mock.close()


@pytest.fixture(scope="session")
def _analytics_mock_server_thread(_analytics_mock_pool: Pool) -> ServerThread:
    """The session's real server (the configuration without a marker)."""
    server, _ = _analytics_mock_pool.server({})
    return server


@pytest.fixture
def analytics_mock_server(
    _analytics_mock_pool: Pool, request: pytest.FixtureRequest
) -> Iterator[AnalyticsMockServer]:
    """A real server on 127.0.0.1, reset to the seed before this test.

    The session's, or a dedicated one when the test's marker asks for other settings.
    """
    server, fresh = _analytics_mock_pool.server(marker_settings(request.node))
    if not fresh or _analytics_mock_pool.options.database_url:
        server.reset()
    mock = AnalyticsMockServer(server=server)
    try:
        yield mock
    finally:
        mock.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand the coverage record to the controller."""
    recorder = session.config.stash.get(_RECORDER, None)
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if recorder is not None and workeroutput is not None:
        workeroutput[WORKER_OUTPUT] = json.dumps(recorder.export())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """In the pytest-xdist controller: take a worker's coverage record."""
    recorder = node.config.stash.get(_RECORDER, None)
    exported = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT)
    if recorder is not None and exported:
        recorder.merge(json.loads(exported))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The coverage report, when asked for (by the controller only, under pytest-xdist)."""
    recorder = config.stash.get(_RECORDER, None)
    if recorder is None or getattr(config, "workerinput", None) is not None:
        return
    from analytics_mock.testing.coverage import report  # noqa: PLC0415

    terminalreporter.write_sep("=", "analytics-mock coverage")
    for line in report(recorder):
        terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """With --analytics-mock-pause-on-failure, hold a failed test's server for a look."""
    report = yield
    if report.when != "call" or not report.failed:
        return report
    if not item.config.getoption(PAUSE_ON_FAILURE):
        return report
    mock = getattr(item, "funcargs", {}).get("analytics_mock_server")
    if isinstance(mock, AnalyticsMockServer):
        _pause(item, mock.ui_url)
    return report


def _pause(item: pytest.Item, ui_url: str) -> None:
    """Wait for Enter with pytest's capture suspended, stdin included."""
    capture = item.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    try:
        print(
            f"\n{item.nodeid} failed; its analytics-mock dashboard: {ui_url}\n"
            "Press Enter to go on.",
            flush=True,
        )
        input()
    except EOFError:
        pass  # no terminal (CI): go on
    finally:
        if capture is not None:
            capture.resume_global_capture()
