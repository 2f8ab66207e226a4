"""The client against what analytics-mock's plugin offers beyond a running server: per-test
settings, call assertions, network faults, failed test mails. Runs with and without `-n 2`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from mail_settings_client import SETTINGS, AnalyzerError, MailSettingsClient

from analytics_mock.testing import AnalyticsMock, AnalyticsMockServer

USER, PASSWORD = "automation", "automation-password"  # from tests/analyzer-seed.yaml
OBJECT = SETTINGS + "/mailServerSetting#0"


@pytest.fixture
def client(analytics_mock: AnalyticsMock) -> Iterator[MailSettingsClient]:
    # `url` is http://analytics-mock.invalid: only `transport` reaches the emulator.
    with MailSettingsClient(
        analytics_mock.url, USER, PASSWORD, transport=analytics_mock.transport
    ) as client:
        yield client


def test_the_in_process_url_needs_the_transport(analytics_mock: AnalyticsMock) -> None:
    with MailSettingsClient(analytics_mock.url, USER, PASSWORD) as unwired:
        with pytest.raises(httpx.ConnectError):
            unwired.mail_server()


def test_assert_requested_with_the_parsed_body(
    client: MailSettingsClient, analytics_mock: AnalyticsMock
) -> None:
    client.set_mail_server("smtp.example.com", 587)

    [put] = analytics_mock.assert_requested(
        "PUT", OBJECT, times=1, json={"hostname": "smtp.example.com", "portNumber": 587}
    )
    assert put["json"]["portNumber"] == 587
    analytics_mock.assert_requested("GET", SETTINGS, times=0)
    with pytest.raises(AssertionError, match="nearest of the 1 call"):
        analytics_mock.assert_requested("PUT", SETTINGS + "/mailServerSetting#1")


@pytest.mark.analytics_mock(
    account_lock_num=3,
    users=[{"name": "intern", "password": "intern-password", "permissions": ["Modify"]}],
)
def test_per_test_settings_lock_the_account(analytics_mock: AnalyticsMock) -> None:
    def client(password: str) -> MailSettingsClient:
        return MailSettingsClient(
            analytics_mock.url, "intern", password, transport=analytics_mock.transport
        )

    for _ in range(3):
        with client("wrong") as wrong, pytest.raises(AnalyzerError):
            wrong.mail_server()
    with client("intern-password") as right, pytest.raises(AnalyzerError) as error:
        right.mail_server()
    assert error.value.status == 401  # locked now, right password or not
    # Only this test had the users and the lock: the seed's user is there as always.
    analytics_mock.unlock("intern")


@pytest.mark.analytics_mock(session_timeout=5.0)
def test_per_test_settings_on_the_server(analytics_mock_server: AnalyticsMockServer) -> None:
    # A dedicated server for these settings, over TCP.
    with MailSettingsClient(analytics_mock_server.url, USER, PASSWORD) as client:
        assert client.mail_server().port == 25


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"drop": True}, httpx.RemoteProtocolError),
        ({"reset": True}, httpx.ReadError),
        ({"empty": True}, httpx.RemoteProtocolError),
    ],
)
def test_connection_faults_in_process(
    client: MailSettingsClient,
    analytics_mock: AnalyticsMock,
    fault: dict[str, bool],
    error: type[Exception],
) -> None:
    analytics_mock.fault(SETTINGS, times=1, **fault)
    with pytest.raises(error):
        client.mail_server()
    assert client.mail_server().hostname == "smtp.corp.example.com"


def test_connection_reset_over_tcp(analytics_mock_server: AnalyticsMockServer) -> None:
    analytics_mock_server.fault(SETTINGS, reset=True, times=1)
    with (
        MailSettingsClient(analytics_mock_server.url, USER, PASSWORD) as client,
        pytest.raises(httpx.ReadError),
    ):
        client.mail_server()


def test_malformed_and_custom_answers(
    client: MailSettingsClient, analytics_mock: AnalyticsMock
) -> None:
    analytics_mock.fault(SETTINGS, malformed=True, times=1)
    with pytest.raises(ValueError):
        client.mail_server()
    analytics_mock.fault(SETTINGS, status=503, headers={"Retry-After": "2"}, times=1)
    with pytest.raises(AnalyzerError) as error:
        client.mail_server()
    assert error.value.status == 503
    analytics_mock.fault(SETTINGS, status=502, body="<html>bad gateway</html>", times=1)
    with pytest.raises(AnalyzerError) as error:
        client.mail_server()
    assert (error.value.status, error.value.message_id) == (502, "")


def test_jitter_with_a_seed(client: MailSettingsClient, analytics_mock: AnalyticsMock) -> None:
    analytics_mock.fault(SETTINGS, delay_ms=5, jitter_ms=20, seed=42, times=2)
    for _ in range(2):
        assert client.mail_server().port == 25
    assert all(call["durationMs"] >= 5 for call in analytics_mock.requests())


def test_a_failed_test_mail(client: MailSettingsClient, analytics_mock: AnalyticsMock) -> None:
    analytics_mock.fail_test_mails("auth_rejected", times=1)

    assert client.send_test_mail("ops@example.com") == "auth_rejected"
    assert client.send_test_mail("ops@example.com") is None
    assert [mail["state"] for mail in analytics_mock.test_mails()] == ["success", "failed"]
