"""The client against analytics-mock: in-process (`analytics_mock`) and over a real socket
(`analytics_mock_server`). Both fixtures come with the analytics-mock package."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from mail_settings_client import AnalyzerError, MailServer, MailSettingsClient

from analytics_mock.testing import AnalyticsMock, AnalyticsMockServer

USER, PASSWORD = "automation", "automation-password"  # from tests/analyzer-seed.yaml


@pytest.fixture
def client(analytics_mock: AnalyticsMock) -> Iterator[MailSettingsClient]:
    """The client, talking to an in-process emulator through its transport."""
    with MailSettingsClient(
        analytics_mock.url, USER, PASSWORD, transport=analytics_mock.transport
    ) as client:
        yield client


@pytest.fixture
def remote_client(analytics_mock_server: AnalyticsMockServer) -> Iterator[MailSettingsClient]:
    """The client as in production: a URL, over TCP."""
    with MailSettingsClient(analytics_mock_server.url, USER, PASSWORD) as client:
        yield client


def test_reads_the_seeded_settings(client: MailSettingsClient) -> None:
    assert client.mail_server() == MailServer(
        "smtp.corp.example.com", 25, "analyzer@corp.example.com"
    )


def test_changes_the_mail_server(client: MailSettingsClient, analytics_mock: AnalyticsMock) -> None:
    stored = client.set_mail_server("smtp.example.com", 587)

    assert (stored.hostname, stored.port) == ("smtp.example.com", 587)
    assert client.mail_server() == stored
    assert [call["method"] for call in analytics_mock.requests()] == ["GET", "PUT"]


def test_changes_the_mail_server_over_tcp(remote_client: MailSettingsClient) -> None:
    remote_client.set_mail_server("smtp.example.com", 587)

    assert remote_client.mail_server().hostname == "smtp.example.com"


def test_wrong_password_is_401(analytics_mock_server: AnalyticsMockServer) -> None:
    with (
        MailSettingsClient(analytics_mock_server.url, USER, "wrong") as client,
        pytest.raises(AnalyzerError) as error,
    ):
        client.mail_server()
    assert error.value.status == 401
    assert error.value.message_id == "KNAQ20101-E"


def test_server_error_is_500(client: MailSettingsClient, analytics_mock: AnalyticsMock) -> None:
    analytics_mock.fault("/Analytics/v1/objects/*", method="PUT", status=500, times=1)

    with pytest.raises(AnalyzerError) as error:
        client.set_mail_server("smtp.example.com", 587)
    assert error.value.status == 500
    # Nothing changed, and the next call goes through.
    assert client.mail_server().hostname == "smtp.corp.example.com"


def test_maintenance_is_412(
    remote_client: MailSettingsClient, analytics_mock_server: AnalyticsMockServer
) -> None:
    with analytics_mock_server.maintenance(True), pytest.raises(AnalyzerError) as error:
        remote_client.mail_server()
    assert error.value.status == 412


def test_dropped_connection(
    remote_client: MailSettingsClient, analytics_mock_server: AnalyticsMockServer
) -> None:
    analytics_mock_server.fault("/Analytics/*", drop=True, times=1)

    with pytest.raises(httpx.RemoteProtocolError):
        remote_client.mail_server()
