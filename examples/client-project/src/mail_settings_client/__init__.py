"""A tiny client of Ops Center Analyzer's email server settings."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

SETTINGS = "/Analytics/v1/objects/EmailServerSettings"
TEST_MAIL = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"


class AnalyzerError(Exception):
    """Analyzer refused a call; `status` and `message_id` say why."""

    def __init__(self, status: int, message_id: str, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message_id = message_id


@dataclass(frozen=True)
class MailServer:
    """Where Analyzer sends its mail."""

    hostname: str
    port: int
    sender: str


class MailSettingsClient:
    """Read and change Analyzer's mail server: `MailSettingsClient(url, user, password)`.

    `url` is the Analyzer root, e.g. https://analyzer.example.com:22016; `transport` is for
    tests (any httpx transport).
    """

    def __init__(
        self,
        url: str,
        user: str,
        password: str,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=url, auth=(user, password), transport=transport, timeout=30.0
        )

    def mail_server(self) -> MailServer:
        """The current settings."""
        return _mail_server(self._call("GET", SETTINGS)["data"][0])

    def set_mail_server(self, hostname: str, port: int) -> MailServer:
        """Point Analyzer at another mail server; the settings as stored."""
        body = {"hostname": hostname, "portNumber": port}
        return _mail_server(self._call("PUT", SETTINGS + "/mailServerSetting%230", json=body))

    def send_test_mail(self, to: str) -> str | None:
        """Have Analyzer send a test mail; None when it went out, else the failure kind."""
        action = self._call("GET", TEST_MAIL)
        action["parameters"][0]["destinationAddresses"] = [to]
        job = self._call("POST", TEST_MAIL + "/invoke", json=action)
        if job["state"] == "success":
            return None
        return str(job["result"][0]["failureKind"])

    def _call(self, method: str, path: str, json: object = None) -> dict[str, Any]:
        response = self._http.request(method, path, json=json)
        if response.is_error:
            try:
                error = response.json()
            except ValueError:
                error = {}
            raise AnalyzerError(
                response.status_code,
                str(error.get("messageID", "")),
                str(error.get("message", response.reason_phrase)),
            )
        document: dict[str, Any] = response.json()
        return document

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> MailSettingsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _mail_server(document: dict[str, Any]) -> MailServer:
    return MailServer(document["hostname"], document["portNumber"], document["senderAddress"])
