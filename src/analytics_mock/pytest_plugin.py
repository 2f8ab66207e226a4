"""pytest plugin: the emulator as fixtures, for projects that test an Analyzer client.

Installing analytics-mock registers it (entry point `analytics_mock` in `pytest11`). Importing
it is cheap: FastAPI, SQLAlchemy, uvicorn and httpx load only when a test uses a fixture.

Fixtures (see `analytics_mock.testing` for every attribute):

- `analytics_mock` -> `AnalyticsMock`: an emulator inside the test process over a fresh SQLite
  database, for this test only. `analytics_mock.client` is a sync `httpx.Client` logged in as
  system/manager; `transport`, `async_transport`, `async_client()` serve clients of your own.
- `analytics_mock_server` -> `AnalyticsMockServer`: a real uvicorn server on 127.0.0.1 (a port
  the kernel chose), started once per session in a background thread and reset before every
  test; `url`/`base_url` for code that opens its own connections, `client` as above.

Both record test mails without sending them (test-mail mode `capture`), ignore the
`ANALYTICS_MOCK_*` environment, and carry the `/_mock/` helpers: `reset()`, `requests(...)`,
`clear_requests()`, `fault(...)`, `clear_faults()`, `maintenance(on)`, `test_mails()`, `state`,
`unlock(name)`; a helper call that fails raises `ControlAPIError` (status and body).

Options, on the command line or in the ini file:

- `--analytics-mock-seed-file PATH` / `analytics_mock_seed_file`: the seed (JSON or YAML with
  `settings` and `users`) both fixtures start from and reset to. A relative path is taken from
  the invocation directory on the command line, from the ini file's directory in the ini file.
- `--analytics-mock-database-url URL` / `analytics_mock_database_url`: a SQLite or PostgreSQL
  URL used instead of the fresh SQLite files. Both fixtures then use that one database, reset
  before each test (so in one test they see each other's state); give parallel workers
  (pytest-xdist) a database each.
- `--analytics-mock-pause-on-failure` (command line only): when a test that uses
  `analytics_mock_server` fails, print its dashboard's URL (`ui_url`) and keep the server, as
  the test left it, until Enter is pressed. Without a terminal to read from, it goes on.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from analytics_mock.testing import (
    AnalyticsMock,
    AnalyticsMockServer,
    ServerThread,
    isolated_settings,
)

if TYPE_CHECKING:
    from analytics_mock.settings import Settings

SEED_FILE = "analytics_mock_seed_file"
DATABASE_URL = "analytics_mock_database_url"
PAUSE_ON_FAILURE = "analytics_mock_pause_on_failure"


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
        help="SQLite or PostgreSQL URL for the emulator instead of fresh SQLite files",
    )
    group.addoption(
        "--analytics-mock-pause-on-failure",
        dest=PAUSE_ON_FAILURE,
        action="store_true",
        help="after a failing test, keep analytics_mock_server up until Enter (see its ui_url)",
    )
    parser.addini(SEED_FILE, "seed file for the analytics-mock fixtures", default="")
    parser.addini(DATABASE_URL, "database URL for the analytics-mock fixtures", default="")


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
        return cls(seed_file=seed, database_url=url, secret_key=secrets.token_urlsafe(32))

    def settings(self, fresh_directory: Path) -> Settings:
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
        return isolated_settings(**values)


@pytest.fixture(scope="session")
def _analytics_mock_options(pytestconfig: pytest.Config) -> Options:
    return Options.from_config(pytestconfig)


@pytest.fixture
def analytics_mock(
    _analytics_mock_options: Options, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AnalyticsMock]:
    """An in-process emulator for this test only, over a fresh SQLite database."""
    options = _analytics_mock_options
    mock = AnalyticsMock(options.settings(tmp_path_factory.mktemp("analytics-mock")))
    try:
        if options.database_url:
            mock.reset()  # a shared database keeps the previous test's state
        yield mock
    finally:
        mock.close()


@pytest.fixture(scope="session")
def _analytics_mock_server_thread(
    _analytics_mock_options: Options, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """The real server, started once per session and stopped at its end."""
    options = _analytics_mock_options
    server = ServerThread(options.settings(tmp_path_factory.mktemp("analytics-mock-server")))
    yield server
    server.stop()


@pytest.fixture
def analytics_mock_server(
    _analytics_mock_server_thread: ServerThread,
) -> Iterator[AnalyticsMockServer]:
    """The session's real server on 127.0.0.1, reset to the seed before this test."""
    mock = AnalyticsMockServer(_analytics_mock_server_thread.url)
    try:
        mock.reset()
        yield mock
    finally:
        mock.close()


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
