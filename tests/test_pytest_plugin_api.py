"""The plugin's newer API: isolation, the marker, assert_requested, fault kinds, test-mail
failures, `{worker}`, encoded paths, the coverage report, and the missing-extra message.

Direct tests use this session's fixtures; the session-level behaviour runs in pytester sessions
(see tests/test_pytest_plugin.py for why they run in this process with `-p`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from analytics_mock.services.controls import FaultRule
from analytics_mock.testing import AnalyticsMock, AnalyticsMockServer
from tests.support import plugin_runs
from tests.support.helpers import OBJECT_PATH, SETTINGS_PATH
from tests.support.plugin_runs import PREAMBLE, Run

# The pytester fixtures, shared with tests/test_pytest_plugin.py.
warm_modules = plugin_runs.warm_modules
run = plugin_runs.run

pytest_plugins = ["pytester"]

TEST_MAIL = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"
BOTH = pytest.mark.parametrize("name", ["analytics_mock", "analytics_mock_server"])
Mock = AnalyticsMock | AnalyticsMockServer


def send_test_mail(mock: Mock) -> dict[str, object]:
    action = mock.client.get(TEST_MAIL).json()
    action["parameters"][0]["destinationAddresses"] = ["ops@example.com"]
    job: dict[str, object] = mock.client.post(TEST_MAIL + "/invoke", json=action).json()
    return job


# --- isolation ---------------------------------------------------------------------------------


def test_a_call_held_past_its_test_never_reaches_the_next_test(
    pytester: pytest.Pytester, run: Run
) -> None:
    """A PUT held by a delay fault when its test ends is fenced out by the next test's reset."""
    pytester.makepyfile(
        PREAMBLE
        + """
import threading
import httpx

HELD = {}

def own_client(mock):
    if hasattr(mock, "transport"):
        return httpx.Client(base_url=mock.url, transport=mock.transport,
                            auth=("system", "manager"), timeout=60)
    return httpx.Client(base_url=mock.url, auth=("system", "manager"), timeout=60)

def put_held(http, name):
    try:
        HELD[name] = http.put(OBJECT, json={"hostname": "late.example.com"}).status_code
    except httpx.HTTPError as error:
        HELD[name] = type(error).__name__

@BOTH
def test_1_leaves_a_call_behind(request, name):
    mock = request.getfixturevalue(name)
    mock.fault(OBJECT, method="PUT", delay_ms=30_000, times=1)
    thread = threading.Thread(target=put_held, args=(own_client(mock), name))
    thread.start()
    HELD[name + " thread"] = thread
    # The rule's one use is taken once the call is in the emulator, held by the delay.
    while mock.state["faults"]:
        pass

@BOTH
def test_2_does_not_see_it(request, name):
    mock = request.getfixturevalue(name)
    # The reset before this test ended the held call at once, without an answer.
    HELD[name + " thread"].join(10)
    assert not HELD[name + " thread"].is_alive()
    assert HELD[name] == "RemoteProtocolError"
    assert mock.requests() == []
    assert hostname(mock) == "localhost"
    assert [c["method"] for c in mock.requests()] == ["GET"]
"""
    )
    run().assert_outcomes(passed=4)


# --- the marker --------------------------------------------------------------------------------


def test_marker_gives_a_test_its_own_settings(pytester: pytest.Pytester, run: Run) -> None:
    pytester.makepyfile(
        PREAMBLE
        + """
URLS = []
SEED = {"settings": [{"instanceID": "mailServerSetting#0", "hostname": "marked.example.com",
                      "portNumber": 25}]}

@BOTH
def test_1_default(request, name):
    mock = request.getfixturevalue(name)
    assert hostname(mock) == "localhost"
    URLS.append(mock.url)

@BOTH
@pytest.mark.analytics_mock(
    account_lock_num=2,
    users=[{"name": "bob", "password": "bob-pw", "permissions": ["Admin"]}],
    seed=SEED,
)
def test_2_marked(request, name):
    mock = request.getfixturevalue(name)
    assert hostname(mock) == "marked.example.com"
    bob = mock.make_client(auth=("bob", "bob-pw"))
    assert bob.get(LIST).status_code == 200
    wrong = mock.make_client(auth=("bob", "wrong"))
    assert [wrong.get(LIST).status_code for _ in range(2)] == [401, 401]
    assert bob.get(LIST).status_code == 401  # locked after 2 failures
    URLS.append(mock.url)

@BOTH
def test_3_default_again(request, name):
    mock = request.getfixturevalue(name)
    assert hostname(mock) == "localhost"
    assert mock.make_client(auth=("bob", "bob-pw")).get(LIST).status_code == 401
    URLS.append(mock.url)

def test_4_servers():
    # in-process, server for each of tests 1..3
    default_server, marked_server, again_server = URLS[1], URLS[3], URLS[5]
    assert default_server == again_server
    assert marked_server != default_server

@pytest.mark.analytics_mock(no_such_option=1)
def test_5_unknown(analytics_mock):
    pass

@pytest.mark.analytics_mock(port=80)
def test_6_fixed(analytics_mock_server):
    pass
"""
    )
    result = run("-v")
    result.assert_outcomes(passed=7, errors=2)
    result.stdout.fnmatch_lines(
        ["*unknown or fixed setting(s) no_such_option*", "*unknown or fixed setting(s) port*"]
    )


# --- assert_requested and the journal's json ---------------------------------------------------


def test_assert_requested(analytics_mock: AnalyticsMock) -> None:
    http = analytics_mock.client
    http.put(OBJECT_PATH, json={"portNumber": 2525, "password": "c2VjcmV0"})
    http.get(SETTINGS_PATH)
    http.get(SETTINGS_PATH)

    [put] = analytics_mock.assert_requested("PUT", OBJECT_PATH, times=1)
    assert put["json"] == {"portNumber": 2525, "password": "***"}
    analytics_mock.assert_requested("put", "/Analytics/v1/objects/*", json=put["json"])
    analytics_mock.assert_requested("GET", SETTINGS_PATH, times=2)
    analytics_mock.assert_requested("GET", SETTINGS_PATH)

    with pytest.raises(AssertionError) as failed:
        analytics_mock.assert_requested("GET", SETTINGS_PATH, times=3)
    assert "expected GET /Analytics/v1/objects/EmailServerSettings 3 time(s), got it 2" in str(
        failed.value
    )
    with pytest.raises(AssertionError) as failed:
        analytics_mock.assert_requested("PUT", SETTINGS_PATH + "/mailServerSetting#1")
    message = str(failed.value)
    assert "got it 0 time(s)" in message
    assert "nearest of the 3 call(s) seen:" in message
    # The nearest first: the PUT on #0 is one character away.
    nearest = message.splitlines()[2]
    assert nearest.startswith("  PUT /Analytics/v1/objects/EmailServerSettings/mailServerSetting#0")
    assert "c2VjcmV0" not in message
    with pytest.raises(AssertionError, match="with json"):
        analytics_mock.assert_requested("PUT", OBJECT_PATH, json={"portNumber": 1})


def test_assert_requested_on_an_empty_journal(analytics_mock: AnalyticsMock) -> None:
    with pytest.raises(AssertionError, match="no call to the emulated API was journalled"):
        analytics_mock.assert_requested("GET", SETTINGS_PATH)


def test_requests_returns_every_entry_by_default(analytics_mock: AnalyticsMock) -> None:
    for _ in range(120):
        analytics_mock.client.get(SETTINGS_PATH)
    assert len(analytics_mock.requests()) == 120
    assert len(analytics_mock.requests(limit=100)) == 100


def test_encoded_paths_in_faults_and_filters_match(analytics_mock: AnalyticsMock) -> None:
    encoded = "/Analytics/v1/objects/EmailServerSettings/mailServerSetting%230"
    rule = analytics_mock.fault(encoded, status=503, times=1)
    assert rule["path"] == "/Analytics/v1/objects/EmailServerSettings/mailServerSetting#0"
    assert analytics_mock.client.put(OBJECT_PATH, json={}).status_code == 503
    assert [c["status"] for c in analytics_mock.requests(path=encoded)] == [503]
    analytics_mock.assert_requested("PUT", encoded, times=1)
    refused = analytics_mock.make_client(auth=None).post(
        "/_mock/faults", json={"path": "/Analytics/%FF", "status": 500}
    )
    assert refused.status_code == 400
    assert "percent escapes are not UTF-8" in refused.json()["message"]


# --- fault kinds, on both fixtures ------------------------------------------------------------


@BOTH
def test_connection_faults_raise_what_httpx_raises(
    request: pytest.FixtureRequest, name: str
) -> None:
    mock: Mock = request.getfixturevalue(name)
    mock.fault(SETTINGS_PATH, reset=True, times=1)
    with pytest.raises(httpx.ReadError, match="Connection reset by peer"):
        mock.client.get(SETTINGS_PATH)
    mock.fault(SETTINGS_PATH, empty=True, status=503, times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        mock.client.get(SETTINGS_PATH)
    assert mock.client.get(SETTINGS_PATH).status_code == 200
    assert [c["status"] for c in mock.requests()] == [200, 0, 0]


@BOTH
def test_answer_faults(request: pytest.FixtureRequest, name: str) -> None:
    mock: Mock = request.getfixturevalue(name)
    mock.fault(SETTINGS_PATH, malformed=True, times=1)
    answer = mock.client.get(SETTINGS_PATH)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        answer.json()

    mock.fault(SETTINGS_PATH, status=503, headers={"Retry-After": "7"}, times=1)
    answer = mock.client.get(SETTINGS_PATH)
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "7")
    assert answer.json()["messageID"] == "KNAQ29999-E"

    mock.fault(SETTINGS_PATH, body="<html>proxy</html>", status=502, times=1)
    answer = mock.client.get(SETTINGS_PATH)
    assert (answer.status_code, answer.text) == (502, "<html>proxy</html>")

    mock.fault(SETTINGS_PATH, headers={"X-Trace": "abc"}, times=1)
    answer = mock.client.get(SETTINGS_PATH)
    assert (answer.status_code, answer.headers["x-trace"]) == (200, "abc")
    assert answer.json()["data"][0]["instanceID"] == "mailServerSetting#0"

    mock.fault(SETTINGS_PATH, delay_ms=20, jitter_ms=30, seed=7, times=1)
    assert mock.client.get(SETTINGS_PATH).status_code == 200
    assert mock.requests()[0]["durationMs"] >= 20
    assert [f["seed"] for f in mock.state["faults"]] == []


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"drop": True, "reset": True}, "drop and reset exclude each other"),
        ({"reset": True, "status": 500}, "status and reset exclude each other"),
        ({"empty": True, "body": "x"}, "empty sends no body and no headers"),
        ({"malformed": True, "body": "x"}, "malformed and body exclude each other"),
        ({"status": 204}, "a status below 400 needs a body, malformed or empty"),
        ({"status": 500, "seed": 1}, "seed needs a jitterMs"),
        ({"headers": {"Content-Length": "9"}}, "headers may not set Content-Length"),
        ({"headers": {"X-A": "a\r\nb"}}, "headers"),
    ],
)
def test_contradictory_fault_rules_are_400(
    analytics_mock: AnalyticsMock, rule: dict[str, object], problem: str
) -> None:
    answer = analytics_mock.make_client(auth=None).post(
        "/_mock/faults", json={"path": SETTINGS_PATH, **rule}
    )
    assert answer.status_code == 400
    assert problem in answer.json()["message"]
    assert analytics_mock.state["faults"] == []


def test_jitter_with_a_seed_repeats_its_delays() -> None:
    def delays(seed: int) -> list[float]:
        row = {
            "id": 1,
            "method": None,
            "path_pattern": "/*",
            "status": None,
            "message": None,
            "delay_ms": 10,
            "drop": False,
            "remaining": None,
            "answer": None,
            "headers": None,
            "body": None,
            "jitter_ms": 1000,
            "seed": seed,
        }
        rule = FaultRule.from_row(type("Row", (), row)())
        return [rule.delay() for _ in range(20)]

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)
    assert all(0.01 <= delay <= 1.01 for delay in delays(7))


def test_fault_kinds_are_in_the_control_api_schema(analytics_mock: AnalyticsMock) -> None:
    # The controls have a document of their own, apart from the emulated API's.
    document = analytics_mock.client.get("/_mock/openapi.json").json()
    schema = document["components"]["schemas"]
    fault_in = schema["FaultIn"]["properties"]
    for name in ("reset", "empty", "malformed", "headers", "body", "jitterMs", "seed"):
        assert name in fault_in, name
        assert fault_in[name].get("description"), name
    assert "failureKind" in schema["MailFailureIn"]["properties"]
    assert "json" in schema["JournalEntry"]["properties"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [ref for value in node.values() for ref in refs(value)]
        if isinstance(node, list):
            return [ref for value in node for ref in refs(value)]
        return []

    dangling = {ref for ref in refs(document) if ref.rpartition("/")[2] not in schema}
    assert dangling == set()


# --- failed test mails -------------------------------------------------------------------------


@BOTH
def test_fail_test_mails(request: pytest.FixtureRequest, name: str) -> None:
    mock: Mock = request.getfixturevalue(name)
    failure = mock.fail_test_mails("auth_rejected", times=1)
    assert (failure["failureKind"], failure["remaining"]) == ("auth_rejected", 1)
    job = send_test_mail(mock)
    assert job["state"] == "failed"
    assert job["result"][0]["failureKind"] == "auth_rejected"  # type: ignore[index]
    assert send_test_mail(mock)["state"] == "success"
    mock.fail_test_mails("timeout")
    assert [send_test_mail(mock)["state"] for _ in range(2)] == ["failed", "failed"]
    mock.clear_test_mail_failures()
    assert send_test_mail(mock)["state"] == "success"
    assert [m["state"] for m in mock.test_mails()] == [
        "success",
        "failed",
        "failed",
        "success",
        "failed",
    ]


@pytest.mark.analytics_mock(test_mail_mode="smtp")
def test_fail_test_mails_in_smtp_mode_sends_nothing(analytics_mock: AnalyticsMock) -> None:
    analytics_mock.fail_test_mails("connection_refused", times=1)
    job = send_test_mail(analytics_mock)
    assert job["state"] == "failed"
    [mail] = analytics_mock.test_mails()
    assert (mail["mode"], mail["failureKind"]) == ("smtp", "connection_refused")
    assert "injected by the test controls" in mail["detail"]


@BOTH
@pytest.mark.analytics_mock(control_token="t0ken")
def test_helpers_send_a_configured_control_token(request: pytest.FixtureRequest, name: str) -> None:
    mock: Mock = request.getfixturevalue(name)
    mock.fault(SETTINGS_PATH, status=503, times=1)
    assert mock.client.get(SETTINGS_PATH).status_code == 503
    assert mock.make_client(auth=None).get("/_mock/faults").status_code == 401


def test_unknown_failure_kind_is_400(analytics_mock: AnalyticsMock) -> None:
    with pytest.raises(Exception, match="answered 400"):
        analytics_mock.fail_test_mails("nonsense")


# --- {worker}, xdist and the coverage report ---------------------------------------------------

XDIST_TESTS = """
import pytest
LIST = "/Analytics/v1/objects/EmailServerSettings"

@pytest.mark.parametrize("i", range(4))
def test_in_process(analytics_mock, i):
    assert analytics_mock.client.get(LIST).status_code == 200

@pytest.mark.parametrize("i", range(4))
def test_server(analytics_mock_server, i):
    assert analytics_mock_server.make_client(auth=None).get(LIST).status_code == 401
"""


def run_subprocess(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ANALYTICS_MOCK_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("workers", [None, "2"])
def test_worker_database_urls_and_coverage(tmp_path: Path, workers: str | None) -> None:
    (tmp_path / "test_x.py").write_text(XDIST_TESTS)
    url = f"sqlite:///{tmp_path}/db-{{worker}}.db"
    args = ["--analytics-mock-database-url", url, "--analytics-mock-coverage"]
    if workers:
        args += ["-n", workers]
    done = run_subprocess(tmp_path, *args)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "8 passed" in output
    databases = sorted(path.name for path in tmp_path.glob("db-*.db"))
    assert databases == (["db-gw0.db", "db-gw1.db"] if workers else ["db-master.db"])
    # One report, the workers' records merged.
    assert output.count("analytics-mock coverage") == 1
    assert "GET /Analytics/v1/objects/EmailServerSettings: saw 200, 401; never " in output
    assert "PUT /Analytics/v1/objects/EmailServerSettings/{id}: saw nothing; never" in output
    assert "message IDs never seen: " in output
    assert "KNAQ20101-E" not in output.split("message IDs never seen: ")[1].splitlines()[0]


def test_coverage_is_off_by_default(pytester: pytest.Pytester, run: Run) -> None:
    pytester.makepyfile(XDIST_TESTS)
    result = run()
    result.assert_outcomes(passed=8)
    assert "analytics-mock coverage" not in result.stdout.str()


# --- without the pytest extra ------------------------------------------------------------------


def test_without_httpx_the_error_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['httpx'] = None\n"
        "from analytics_mock.testing import Emulator, isolated_settings\n"
        f"Emulator(isolated_settings(database_url='sqlite:///{tmp_path}/x.db', secret_key='k'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode != 0
    assert "pip install 'analytics-mock[pytest]'" in done.stderr.splitlines()[-1]


# --- the in-process url reaches nothing but the transport ---------------------------------------


def test_in_process_url_reaches_no_server(analytics_mock: AnalyticsMock) -> None:
    with (
        httpx.Client(base_url=analytics_mock.url, timeout=5) as http,
        pytest.raises(httpx.ConnectError),
    ):
        http.get(SETTINGS_PATH)
    with httpx.Client(base_url=analytics_mock.url, transport=analytics_mock.transport) as http:
        assert http.get(SETTINGS_PATH, auth=("system", "manager")).status_code == 200


def test_async_reset_fence_from_another_thread(analytics_mock: AnalyticsMock) -> None:
    """A reset from the test thread ends a call an async client holds on its own loop."""
    analytics_mock.fault(SETTINGS_PATH, delay_ms=30_000, times=1)
    outcome: list[str] = []
    entered = threading.Event()

    async def held() -> None:
        async with analytics_mock.async_client() as http:
            entered.set()
            try:
                await http.get(SETTINGS_PATH)
                outcome.append("answered")
            except httpx.RemoteProtocolError:
                outcome.append("dropped")

    thread = threading.Thread(target=asyncio.run, args=(held(),))
    thread.start()
    entered.wait(10)
    while analytics_mock.state["faults"]:
        pass  # until the held call has taken the rule's one use
    analytics_mock.reset()
    thread.join(10)
    assert outcome == ["dropped"]
    assert analytics_mock.requests() == []
