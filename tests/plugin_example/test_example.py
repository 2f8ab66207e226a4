"""Testing an Analyzer client against analytics-mock with its pytest plugin.

`pip install analytics-mock httpx pytest` is all it takes: the plugin comes with analytics-mock
and gives two fixtures. `analytics_mock` is an emulator inside the test process, new for each
test; `analytics_mock_server` is a real server on 127.0.0.1, started once and reset before each
test. Both hold a logged-in `client` (system/manager) and the test controls: `fault(...)`,
`maintenance(...)`, `requests(...)`, `test_mails()`, `state`, `reset()`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from analytics_mock.testing import AnalyticsMock, AnalyticsMockServer

# The client under test: your code, written against a real Analyzer. It takes an httpx.Client
# whose base URL is the Analyzer (for example https://analyzer.example.com:22016) and which
# carries the credentials.

SETTINGS = "/Analytics/v1/objects/EmailServerSettings"
TEST_MAIL = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"


def set_mail_server(http: httpx.Client, hostname: str, port: int) -> dict[str, Any]:
    """Point Analyzer at another mail server; the updated settings."""
    response = http.put(
        SETTINGS + "/mailServerSetting%230", json={"hostname": hostname, "portNumber": port}
    )
    response.raise_for_status()
    settings: dict[str, Any] = response.json()
    return settings


def get_mail_server(http: httpx.Client) -> dict[str, Any]:
    """The current mail server settings."""
    response = http.get(SETTINGS)
    response.raise_for_status()
    settings: dict[str, Any] = response.json()["data"][0]
    return settings


def send_test_mail(http: httpx.Client, to: str) -> dict[str, Any]:
    """Ask Analyzer to send a test mail with its settings; the finished Job."""
    action = http.get(TEST_MAIL).raise_for_status().json()
    action["parameters"][0]["destinationAddresses"] = [to]
    response = http.post(TEST_MAIL + "/invoke", json=action)
    response.raise_for_status()
    job: dict[str, Any] = response.json()
    return job


# The tests.


def test_set_then_get(analytics_mock: AnalyticsMock) -> None:
    set_mail_server(analytics_mock.client, "smtp.example.com", 587)

    assert get_mail_server(analytics_mock.client)["hostname"] == "smtp.example.com"
    assert get_mail_server(analytics_mock.client)["portNumber"] == 587
    # The journal shows what the client sent.
    [put] = analytics_mock.requests(method="PUT")
    assert json.loads(put["body"]) == {"hostname": "smtp.example.com", "portNumber": 587}


def test_set_then_get_over_a_real_socket(analytics_mock_server: AnalyticsMockServer) -> None:
    # Code that builds its own client from a URL gets one: analytics_mock_server.url.
    with httpx.Client(base_url=analytics_mock_server.url, auth=("system", "manager")) as http:
        set_mail_server(http, "smtp.example.com", 587)
        assert get_mail_server(http)["hostname"] == "smtp.example.com"


def test_wrong_password_is_401(analytics_mock_server: AnalyticsMockServer) -> None:
    with (
        httpx.Client(base_url=analytics_mock_server.url, auth=("system", "wrong")) as http,
        pytest.raises(httpx.HTTPStatusError) as error,
    ):
        get_mail_server(http)
    assert error.value.response.status_code == 401
    assert error.value.response.json()["messageID"] == "KNAQ20101-E"


def test_server_error_is_raised(analytics_mock: AnalyticsMock) -> None:
    analytics_mock.fault(SETTINGS + "/*", method="PUT", status=500, times=1)

    with pytest.raises(httpx.HTTPStatusError) as error:
        set_mail_server(analytics_mock.client, "smtp.example.com", 587)
    assert error.value.response.status_code == 500
    # The fault held for one call only: the retry goes through.
    assert set_mail_server(analytics_mock.client, "smtp.example.com", 587)["portNumber"] == 587


def test_dropped_connection(analytics_mock_server: AnalyticsMockServer) -> None:
    # Dropping the connection needs a real one: the server fixture.
    analytics_mock_server.fault(SETTINGS, drop=True, times=1)

    with pytest.raises(httpx.RemoteProtocolError):
        get_mail_server(analytics_mock_server.client)


def test_maintenance_is_412(analytics_mock_server: AnalyticsMockServer) -> None:
    with analytics_mock_server.maintenance(True):
        with pytest.raises(httpx.HTTPStatusError) as error:
            get_mail_server(analytics_mock_server.client)
        assert error.value.response.status_code == 412
    # Leaving the block turned maintenance off again.
    assert get_mail_server(analytics_mock_server.client)["hostname"] == "localhost"


def test_test_mail_is_recorded_not_sent(analytics_mock: AnalyticsMock) -> None:
    set_mail_server(analytics_mock.client, "smtp.example.com", 587)

    job = send_test_mail(analytics_mock.client, "ops@example.com")

    assert job["state"] == "success"
    [mail] = analytics_mock.test_mails()
    assert mail["mode"] == "capture"
    assert (mail["hostname"], mail["portNumber"]) == ("smtp.example.com", 587)
    assert mail["destinationAddresses"] == ["ops@example.com"]
    assert "To: ops@example.com" in mail["content"]
