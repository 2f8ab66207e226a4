"""The pytest plugin in five tests: `pip install 'analytics-mock[pytest]'`."""

from __future__ import annotations

import httpx
import pytest

from analytics_mock.testing import AnalyticsMock

SETTINGS = "/Analytics/v1/objects/EmailServerSettings"
TEST_MAIL = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"


def test_change_the_mail_server(analytics_mock: AnalyticsMock) -> None:
    # `client` is logged in as system/manager; the emulator is reset before every test.
    answer = analytics_mock.client.put(
        SETTINGS + "/mailServerSetting%230", json={"portNumber": 587}
    )

    assert answer.json()["portNumber"] == 587
    analytics_mock.assert_requested("PUT", SETTINGS + "/*", times=1, json={"portNumber": 587})


def test_your_own_client(analytics_mock: AnalyticsMock) -> None:
    # In-process, `url` reaches the emulator only through `transport`.
    with httpx.Client(base_url=analytics_mock.url, transport=analytics_mock.transport) as http:
        assert http.get(SETTINGS, auth=("system", "wrong")).status_code == 401


def test_a_dropped_connection(analytics_mock: AnalyticsMock) -> None:
    analytics_mock.fault(SETTINGS, drop=True, times=1)

    with pytest.raises(httpx.RemoteProtocolError):  # as over a real socket
        analytics_mock.client.get(SETTINGS)


@pytest.mark.analytics_mock(account_lock_num=1, lock_system_account=True)
def test_a_locked_account(analytics_mock: AnalyticsMock) -> None:
    analytics_mock.make_client(auth=("system", "wrong")).get(SETTINGS)

    assert analytics_mock.client.get(SETTINGS).status_code == 401


def test_a_failed_test_mail(analytics_mock: AnalyticsMock) -> None:
    analytics_mock.fail_test_mails("auth_rejected", times=1)
    action = analytics_mock.client.get(TEST_MAIL).json()
    action["parameters"][0]["destinationAddresses"] = ["ops@example.com"]

    job = analytics_mock.client.post(TEST_MAIL + "/invoke", json=action).json()

    assert (job["state"], job["result"][0]["failureKind"]) == ("failed", "auth_rejected")
