"""The README's pytest example: your client's code against the `analytics_mock` fixture."""

import httpx
import pytest

from analytics_mock.testing import AnalyticsMock

SETTINGS = "/Analytics/v1/objects/EmailServerSettings"


def set_mail_server(http: httpx.Client, hostname: str) -> None:
    """The code under test: point Analyzer at another mail server."""
    http.put(SETTINGS + "/mailServerSetting%230", json={"hostname": hostname}).raise_for_status()


def test_set_mail_server(analytics_mock: AnalyticsMock) -> None:
    set_mail_server(analytics_mock.client, "smtp.example.com")

    [setting] = analytics_mock.client.get(SETTINGS).json()["data"]
    assert setting["hostname"] == "smtp.example.com"
    [put] = analytics_mock.requests(method="PUT")  # the journal: what the client sent
    assert put["status"] == 200


def test_server_error_is_raised(analytics_mock: AnalyticsMock) -> None:
    analytics_mock.fault(SETTINGS + "/*", method="PUT", status=500, times=1)

    with pytest.raises(httpx.HTTPStatusError):
        set_mail_server(analytics_mock.client, "smtp.example.com")
