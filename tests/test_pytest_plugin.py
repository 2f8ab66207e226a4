"""The pytest plugin: fixtures, options and helpers, proven in pytester sessions and directly.

The pytester sessions run in this process with entry-point plugins off and the plugin named by
`-p`, so they behave the same before and after the `pytest11` entry point is installed. The
direct tests use the `analytics_mock` fixture of this session's plugin (installed through the
entry point, or `-p analytics_mock.pytest_plugin` before it is).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from analytics_mock.testing import AnalyticsMock, ControlAPIError
from tests.support import plugin_runs
from tests.support.helpers import OBJECT_PATH, SETTINGS_PATH
from tests.support.plugin_runs import PREAMBLE, Run

pytest_plugins = ["pytester"]

# The pytester fixtures, shared with tests/test_pytest_plugin_api.py.
warm_modules = plugin_runs.warm_modules
run = plugin_runs.run

SEED_YAML = """
settings:
  - instanceID: "mailServerSetting#0"
    hostname: seed.example.com
    portNumber: 587
users:
  - name: alice
    password: alice-password
    permissions: [Admin]
"""


def thread_names() -> list[str]:
    return [thread.name for thread in threading.enumerate()]


# --- the fixtures, in pytester sessions -------------------------------------------------------


def test_both_fixtures_isolate_each_test(pytester: pytest.Pytester, run: Run) -> None:
    urls = pytester.path / "urls.txt"
    pytester.makepyfile(
        PREAMBLE
        + f"""
URLS = {str(urls)!r}

@BOTH
def test_1_dirty(request, name):
    mock = request.getfixturevalue(name)
    assert hostname(mock) == "localhost"
    assert mock.client.put(OBJECT, json={{"hostname": "dirty.example.com"}}).status_code == 200
    assert hostname(mock) == "dirty.example.com"
    mock.fault("/elsewhere/*", status=500)
    mock.maintenance(True)
    with open(URLS, "a") as out:
        out.write(mock.url + "\\n")

@BOTH
def test_2_clean(request, name):
    mock = request.getfixturevalue(name)
    assert mock.state["faults"] == []
    assert mock.state["maintenance"] is False
    assert hostname(mock) == "localhost"
    assert [call["method"] for call in mock.requests()] == ["GET"]
    with open(URLS, "a") as out:
        out.write(mock.url + "\\n")
"""
    )
    result = run("-v")
    result.assert_outcomes(passed=4)
    in_process, server_1, _, server_2 = urls.read_text().split()
    # A name no resolver answers: code that ignores `transport` cannot reach a real server.
    assert in_process == "http://analytics-mock.invalid"
    # One real server for the session, on a port the kernel chose, not the default one.
    assert server_1 == server_2
    assert server_1.startswith("http://127.0.0.1:")
    assert not server_1.endswith(":22015")
    # Stopped at the end of the session: its thread is gone and its port refuses connections.
    port = server_1.rpartition(":")[2]
    assert f"analytics-mock-server-{port}" not in thread_names()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server_1 + "/healthz", timeout=5)


def test_without_the_reset_the_emulators_would_leak_state(
    pytester: pytest.Pytester, run: Run
) -> None:
    """The counter-proof of the test above: the session's emulator and server keep state."""
    pytester.makepyfile(
        PREAMBLE
        + """
from analytics_mock.testing import AnalyticsMock, AnalyticsMockServer

def test_1(_analytics_mock_server_thread, _analytics_mock_pool):
    mock = AnalyticsMockServer(_analytics_mock_server_thread.url)
    assert mock.client.put(OBJECT, json={"hostname": "dirty.example.com"}).status_code == 200
    mock.close()
    emulator, _ = _analytics_mock_pool.emulator({})
    mock = AnalyticsMock(emulator=emulator)
    assert mock.client.put(OBJECT, json={"hostname": "dirty.example.com"}).status_code == 200
    mock.close()

def test_2(_analytics_mock_server_thread, _analytics_mock_pool):
    mock = AnalyticsMockServer(_analytics_mock_server_thread.url)
    assert hostname(mock) == "dirty.example.com"
    mock.close()
    emulator, fresh = _analytics_mock_pool.emulator({})
    assert not fresh
    mock = AnalyticsMock(emulator=emulator)
    assert hostname(mock) == "dirty.example.com"
    mock.close()
"""
    )
    run().assert_outcomes(passed=2)


def test_helpers_on_both_fixtures(pytester: pytest.Pytester, run: Run) -> None:
    pytester.makepyfile(
        PREAMBLE
        + """
@BOTH
def test_journal(request, name):
    mock = request.getfixturevalue(name)
    before = time.time()
    mock.client.get(LIST, params={"$count": "1"})
    mock.client.put(OBJECT, json={"portNumber": 2525})
    mock.make_client(auth=("system", "wrong")).get(LIST)
    calls = mock.requests()
    assert [(c["method"], c["status"]) for c in calls] == [("GET", 401), ("PUT", 200), ("GET", 200)]
    assert calls[1]["path"] == "/Analytics/v1/objects/EmailServerSettings/mailServerSetting#0"
    assert json.loads(calls[1]["body"]) == {"portNumber": 2525}
    assert calls[1]["json"] == {"portNumber": 2525}
    assert calls[2]["json"] is None
    assert calls[2]["query"] == "%24count=1"
    assert [c["status"] for c in mock.requests(method="get")] == [401, 200]
    assert [c["method"] for c in mock.requests(status=200)] == ["PUT", "GET"]
    assert [c["method"] for c in mock.requests(path=LIST)] == ["GET", "GET"]
    assert len(mock.requests(limit=1)) == 1
    assert len(mock.requests(since=before - 1)) == 3
    assert mock.requests(since=time.time() + 60) == []
    mock.clear_requests()
    assert mock.requests() == []

@BOTH
def test_faults(request, name):
    mock = request.getfixturevalue(name)
    rule = mock.fault(LIST, method="get", status=503, times=1, message="busy")
    assert rule["method"] == "GET" and rule["status"] == 503 and rule["remaining"] == 1
    answer = mock.client.get(LIST)
    assert answer.status_code == 503
    assert "busy" in answer.json()["message"]
    assert mock.client.get(LIST).status_code == 200
    mock.fault("/Analytics/*", status=502)
    assert mock.client.get(LIST).status_code == 502
    assert mock.client.put(OBJECT, json={}).status_code == 502
    mock.clear_faults()
    assert mock.client.get(LIST).status_code == 200
    mock.fault(LIST, delay_ms=300, times=1)
    started = time.monotonic()
    assert mock.client.get(LIST).status_code == 200
    assert time.monotonic() - started >= 0.3

@BOTH
def test_drop(request, name):
    mock = request.getfixturevalue(name)
    mock.fault(LIST, drop=True, times=1)
    # In-process as over a socket: what httpx raises for a dropped connection.
    with pytest.raises(httpx.RemoteProtocolError):
        mock.client.get(LIST)
    assert mock.requests()[0]["status"] == 0
    assert mock.client.get(LIST).status_code == 200

@BOTH
def test_maintenance(request, name):
    mock = request.getfixturevalue(name)
    with mock.maintenance(True) as switch:
        assert (switch.enabled, switch.previous) == (True, False)
        answer = mock.client.get(LIST)
        assert answer.status_code == 412
        assert answer.json()["messageID"] == "KNAQ21201-E"
    assert mock.client.get(LIST).status_code == 200
    mock.maintenance(True)
    assert mock.client.get(LIST).status_code == 412
    mock.maintenance(False)
    assert mock.client.get(LIST).status_code == 200

@BOTH
def test_test_mails(request, name):
    mock = request.getfixturevalue(name)
    action_path = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"
    action = mock.client.get(action_path).json()
    action["parameters"][0]["destinationAddresses"] = ["ops@example.com"]
    job = mock.client.post(action_path + "/invoke", json=action).json()
    assert job["state"] == "success"
    [mail] = mock.test_mails()
    assert mail["jobId"] == job["instanceID"]
    assert mail["mode"] == "capture"
    assert mail["destinationAddresses"] == ["ops@example.com"]

@BOTH
def test_state_and_unlock(request, name):
    mock = request.getfixturevalue(name)
    state = mock.state
    state["settings"][0]["hostname"] = "imported.example.com"
    [system] = state["users"]
    system["locked"] = True
    mock.state = state
    assert mock.client.get(LIST).status_code == 401
    mock.unlock("system")
    assert hostname(mock) == "imported.example.com"
"""
    )
    run().assert_outcomes(passed=12)


def test_seed_file_option(pytester: pytest.Pytester, run: Run) -> None:
    (pytester.path / "seed.yaml").write_text(SEED_YAML)
    pytester.makepyfile(
        PREAMBLE
        + """
@BOTH
def test_seed(request, name):
    mock = request.getfixturevalue(name)
    assert hostname(mock) == "seed.example.com"
    assert mock.make_client(auth=("alice", "alice-password")).get(LIST).status_code == 200
    assert mock.client.put(OBJECT, json={"hostname": "changed.example.com"}).status_code == 200
    mock.reset()
    assert hostname(mock) == "seed.example.com"
"""
    )
    run("--analytics-mock-seed-file", "seed.yaml").assert_outcomes(passed=2)
    # Without the option, the default seed: the same tests fail.
    run().assert_outcomes(failed=2)


def test_seed_file_in_the_ini_file_is_relative_to_it(
    pytester: pytest.Pytester, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    (pytester.path / "seed.yaml").write_text(SEED_YAML)
    pytester.makeini("[pytest]\nanalytics_mock_seed_file = seed.yaml\n")
    test_file = pytester.makepyfile(
        PREAMBLE
        + """
@BOTH
def test_seed(request, name):
    assert hostname(request.getfixturevalue(name)) == "seed.example.com"
"""
    )
    elsewhere = pytester.mkdir("elsewhere")
    monkeypatch.chdir(elsewhere)
    run(str(test_file)).assert_outcomes(passed=2)


def test_a_bad_seed_file_errors_the_test_with_the_reason(
    pytester: pytest.Pytester, run: Run
) -> None:
    pytester.makepyfile("def test_it(analytics_mock):\n    pass\n")
    result = run("--analytics-mock-seed-file", "missing.yaml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*SeedFileError: cannot read *missing.yaml*"])


@pytest.mark.parametrize("where", ["command line", "ini file"])
def test_database_url_option(pytester: pytest.Pytester, run: Run, where: str) -> None:
    database = pytester.path / "shared" / "emulator.db"
    url = f"sqlite:///{database}"
    pytester.makepyfile(
        PREAMBLE
        + """
@BOTH
def test_1_dirty(request, name):
    mock = request.getfixturevalue(name)
    assert mock.client.put(OBJECT, json={"hostname": "dirty.example.com"}).status_code == 200

@BOTH
def test_2_clean(request, name):
    assert hostname(request.getfixturevalue(name)) == "localhost"

def test_3_last_word(analytics_mock):
    answer = analytics_mock.client.put(OBJECT, json={"hostname": "last.example.com"})
    assert answer.status_code == 200
"""
    )
    if where == "command line":
        result = run("--analytics-mock-database-url", url)
    else:
        pytester.makeini(f"[pytest]\nanalytics_mock_database_url = {url}\n")
        result = run()
    result.assert_outcomes(passed=5)
    # The emulator kept its state in that database: the last test's write is there.
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT hostname FROM email_settings").fetchall()
    assert rows == [("last.example.com",)]


def test_fixtures_ignore_the_environment(
    pytester: pytest.Pytester, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANALYTICS_MOCK_MAINTENANCE", "true")
    monkeypatch.setenv("ANALYTICS_MOCK_CONTROL_TOKEN", "secret")
    monkeypatch.setenv("ANALYTICS_MOCK_TEST_MAIL_MODE", "smtp")
    monkeypatch.setenv("ANALYTICS_MOCK_DATABASE_URL", "sqlite:////nonexistent/dir/x.db")
    pytester.makepyfile(
        PREAMBLE
        + """
@BOTH
def test_defaults(request, name):
    mock = request.getfixturevalue(name)
    assert hostname(mock) == "localhost"
    assert mock.state["maintenance"] is False
"""
    )
    run().assert_outcomes(passed=2)


def test_options_are_in_the_help(run: Run) -> None:
    result = run("--help")
    result.stdout.fnmatch_lines(
        [
            "analytics-mock emulator fixtures:",
            "*--analytics-mock-seed-file=PATH*",
            "*--analytics-mock-database-url=URL*",
            "*analytics_mock_seed_file (string):*",
            "*analytics_mock_database_url (string):*",
        ]
    )


def test_importing_the_plugin_loads_no_server_stack() -> None:
    heavy = [
        "analytics_mock.app",
        "analytics_mock.runtime",
        "analytics_mock.settings",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "uvicorn",
        "httpx",
        "pydantic",
        "anyio",
    ]
    code = (
        "import json, sys\n"
        "import analytics_mock.pytest_plugin\n"
        f"print(json.dumps([name for name in {heavy!r} if name in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


# --- the helpers, directly on this session's `analytics_mock` ----------------------------------


def test_client_is_a_logged_in_httpx_client(analytics_mock: AnalyticsMock) -> None:
    assert isinstance(analytics_mock.client, httpx.Client)
    assert str(analytics_mock.client.base_url) == "http://analytics-mock.invalid"
    assert analytics_mock.base_url == "http://analytics-mock.invalid/Analytics/v1"
    answer = analytics_mock.client.get(SETTINGS_PATH)
    assert answer.status_code == 200
    assert answer.headers["www-authenticate"].startswith("HSSO ")
    assert analytics_mock.make_client(auth=None).get(SETTINGS_PATH).status_code == 401
    wrong = analytics_mock.make_client(auth=("system", "wrong"))
    assert wrong.get(SETTINGS_PATH).status_code == 401


def test_transports_and_async_client(analytics_mock: AnalyticsMock) -> None:
    assert isinstance(analytics_mock.async_transport, httpx.ASGITransport)
    with httpx.Client(transport=analytics_mock.transport, base_url=analytics_mock.url) as own:
        assert own.get(SETTINGS_PATH).status_code == 401
        assert own.get(SETTINGS_PATH, auth=("system", "manager")).status_code == 200
    # Closing a client of your own leaves the transport working for the others.
    assert analytics_mock.client.get(SETTINGS_PATH).status_code == 200

    async def main() -> tuple[int, int]:
        async with analytics_mock.async_client() as http:
            ok = (await http.put(OBJECT_PATH, json={"portNumber": 2525})).status_code
        async with httpx.AsyncClient(
            transport=analytics_mock.async_transport, base_url=analytics_mock.url
        ) as anonymous:
            refused = (await anonymous.get(SETTINGS_PATH)).status_code
        return ok, refused

    assert asyncio.run(main()) == (200, 401)
    # Both clients reach the same app and database as `client`.
    assert analytics_mock.client.get(SETTINGS_PATH).json()["data"][0]["portNumber"] == 2525


def test_a_refused_helper_call_raises_with_status_and_body(analytics_mock: AnalyticsMock) -> None:
    with pytest.raises(ControlAPIError) as refused:
        analytics_mock.fault("/Analytics/*")  # no status, delay or drop
    error = refused.value
    assert (error.method, error.path, error.status, error.expected) == (
        "POST",
        "/_mock/faults",
        400,
        201,
    )
    assert "a fault needs a status, a delayMs or jitterMs, drop" in error.body
    assert str(error).startswith("POST /_mock/faults answered 400 (expected 201): {")

    with pytest.raises(ControlAPIError, match=r"answered 404 .*KNAQ20402-E"):
        analytics_mock.unlock("nobody")
    with pytest.raises(ControlAPIError, match=r"PUT /_mock/state answered 400"):
        analytics_mock.state = {"settings": []}
    assert analytics_mock.state["settings"][0]["instanceID"] == "mailServerSetting#0"


def test_maintenance_block_restores_the_previous_value(analytics_mock: AnalyticsMock) -> None:
    analytics_mock.maintenance(True)
    with analytics_mock.maintenance(False):
        assert analytics_mock.client.get(SETTINGS_PATH).status_code == 200
    assert analytics_mock.client.get(SETTINGS_PATH).status_code == 412
    with pytest.raises(RuntimeError), analytics_mock.maintenance(False):
        raise RuntimeError("the block fails")
    assert analytics_mock.state["maintenance"] is True


def test_in_process_drop_raises_what_httpx_raises_over_a_socket(
    analytics_mock: AnalyticsMock,
) -> None:
    analytics_mock.fault(SETTINGS_PATH, drop=True, times=1)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        analytics_mock.client.get(SETTINGS_PATH)
    assert analytics_mock.client.get(SETTINGS_PATH).status_code == 200

    async def main() -> None:
        analytics_mock.fault(SETTINGS_PATH, drop=True, times=1)
        async with analytics_mock.async_client() as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(SETTINGS_PATH)

    asyncio.run(main())


def test_reset_and_user_names_with_odd_characters(analytics_mock: AnalyticsMock) -> None:
    state = analytics_mock.state
    state["users"].append(
        {"name": "ops#1?x%", "password": "pw", "permissions": ["Admin"], "locked": True}
    )
    analytics_mock.state = state
    locked = analytics_mock.make_client(auth=("ops#1?x%", "pw"))
    assert locked.get(SETTINGS_PATH).status_code == 401
    analytics_mock.unlock("ops#1?x%")
    assert locked.get(SETTINGS_PATH).status_code == 200
    analytics_mock.reset()
    assert [user["name"] for user in analytics_mock.state["users"]] == ["system"]


def test_the_test_tmp_path_stays_empty(analytics_mock: AnalyticsMock, tmp_path: Path) -> None:
    assert analytics_mock.client.get(SETTINGS_PATH).status_code == 200
    assert list(tmp_path.iterdir()) == []


# --- regressions of src bugs the helpers ran into -----------------------------------------------


def test_exported_state_with_a_fault_imports_back(analytics_mock: AnalyticsMock) -> None:
    analytics_mock.fault(SETTINGS_PATH, status=503, times=2)
    state = analytics_mock.state
    analytics_mock.state = state
    assert analytics_mock.state["faults"][0]["remaining"] == 2


def test_unlock_a_name_with_a_slash(analytics_mock: AnalyticsMock) -> None:
    state = analytics_mock.state
    state["users"].append(
        {"name": "ops/team", "password": "pw", "permissions": ["Admin"], "locked": True}
    )
    analytics_mock.state = state
    analytics_mock.unlock("ops/team")
    assert analytics_mock.make_client(auth=("ops/team", "pw")).get(SETTINGS_PATH).status_code == 200
