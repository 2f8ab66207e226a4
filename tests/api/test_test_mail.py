"""sendTestMail through the API: real SMTP servers on loopback, every mode, every failure."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from analytics_mock.db.models import EmailSettingRow, TestMailRow
from analytics_mock.runtime import Runtime
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH, basic
from tests.support.smtp_servers import (
    RecordingHandler,
    TlsFiles,
    closed_port,
    make_tls_files,
    silent_server,
    start_smtp_server,
)

pytestmark = pytest.mark.anyio

ACTION = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"
INVOKE = ACTION + "/invoke"
USER, PASSWORD = "mailer", b"s3cret-Pw-for-smtp"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
DESTINATIONS = ["ops@example.com", "dev@example.org"]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def mail_client(
    make_client: Callable[..., httpx.AsyncClient], tls_files: TlsFiles
) -> Iterator[Callable[..., httpx.AsyncClient]]:
    """Clients whose server trusts the test CA and gives up on SMTP after 2 s."""

    def make(**overrides: Any) -> httpx.AsyncClient:
        values: dict[str, Any] = {"smtp_ca_file": tls_files.ca_file, "smtp_timeout": 2.0}
        values.update(overrides)
        return make_client(**values)

    yield make


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def setting(port: int, security: str, *, auth: bool, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hostname": "127.0.0.1",
        "portNumber": port,
        "secureConnection": security,
        "authenticationEnabled": auth,
        "senderAddress": "analyzer@example.net",
    }
    if auth:
        body.update(userId=USER, updatePassword=True, password=b64(PASSWORD))
    body.update(extra)
    return body


def action(destinations: list[str] | None = None, **email_setting: Any) -> dict[str, Any]:
    parameter: dict[str, Any] = {"destinationAddresses": destinations or DESTINATIONS}
    if email_setting:
        parameter["emailSetting"] = email_setting
    return {
        "name": "sendTestMail",
        "href": "http://127.0.0.1:22015" + INVOKE,
        "method": "POST",
        "type": "application/json",
        "parameters": [parameter],
    }


async def invoke(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await client.post(INVOKE, json=body, headers=ADMIN)


async def test_prepare_returns_the_action(client: httpx.AsyncClient) -> None:
    response = await client.get(ACTION, headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {
        "name": "sendTestMail",
        "href": "http://127.0.0.1:22015" + INVOKE,
        "method": "POST",
        "type": "application/json",
        "parameters": [
            {
                "destinationAddresses": [],
                "emailSetting": {
                    "instanceID": "mailServerSetting#0",
                    "hostname": "localhost",
                    "authenticationEnabled": False,
                    "userId": None,
                    "senderAddress": "analytics@localhost",
                    "secureConnection": "Plain",
                    "portNumber": 25,
                },
            }
        ],
    }
    assert response.headers["www-authenticate"].startswith("HSSO ")


async def test_prepare_href_follows_the_request_host(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "https://analyzer.example.com:22016" + ACTION + "?x=1", headers=ADMIN
    )
    assert response.json()["href"] == "https://analyzer.example.com:22016" + INVOKE


async def test_both_operations_need_admin(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: [{name: mod, password: modpw, permissions: [Modify]}]")
    async with make_client(users_file=users) as client:
        assert (await client.get(ACTION)).status_code == 401
        assert (await client.get(ACTION, headers=basic("mod", "modpw"))).status_code == 403
        forbidden = await client.post(INVOKE, json=action(), headers=basic("mod", "modpw"))
        assert forbidden.status_code == 403


@pytest.mark.parametrize("security", ["Plain", "STARTTLS", "TLS"])
@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "auth"])
async def test_mail_arrives(
    mail_client: Callable[..., httpx.AsyncClient],
    tls_files: TlsFiles,
    security: str,
    auth: bool,
) -> None:
    credentials = (USER, PASSWORD) if auth else None
    tls = tls_files if security != "Plain" else None
    with start_smtp_server(security=security, tls=tls, credentials=credentials) as server:  # type: ignore[arg-type]
        async with mail_client() as client:
            stored = await client.put(
                OBJECT_PATH, json=setting(server.port, security, auth=auth), headers=ADMIN
            )
            assert stored.status_code == 200
            response = await invoke(client, action())
    assert response.status_code == 200
    job = response.json()
    assert job["state"] == "success", job
    assert job["affectedResource"] == []
    assert all(TIME.match(job[key]) for key in ("created", "updated", "completed"))
    assert job["result"][0]["failureKind"] is None
    assert job["result"][0]["destinationAddresses"] == DESTINATIONS
    [mail] = server.received
    assert mail.sender == "analyzer@example.net"
    assert mail.recipients == DESTINATIONS
    message = mail.message()
    assert [a.addr_spec for a in message["To"].addresses] == DESTINATIONS
    assert "test mail" in message["Subject"].lower()
    assert mail.login == (USER.encode() if auth else None)
    assert mail.tls == (security != "Plain")


async def test_request_settings_override_for_one_mail_only(
    mail_client: Callable[..., httpx.AsyncClient], runtime: Runtime
) -> None:
    other_password = b"other-Pw-in-request"
    with start_smtp_server(credentials=("someone", other_password)) as server:
        async with mail_client() as client:
            await client.put(OBJECT_PATH, json=setting(25, "Plain", auth=True), headers=ADMIN)
            before = (await client.get(SETTINGS_PATH, headers=ADMIN)).json()
            with_password = action(
                portNumber=server.port,
                userId="someone",
                updatePassword=True,
                password=b64(other_password),
            )
            response = await invoke(client, with_password)
            after = (await client.get(SETTINGS_PATH, headers=ADMIN)).json()
    assert response.json()["state"] == "success", response.json()
    assert server.received[0].login == b"someone"
    assert after == before


async def test_stored_password_is_used_without_update_password(
    mail_client: Callable[..., httpx.AsyncClient],
) -> None:
    with start_smtp_server(credentials=(USER, PASSWORD)) as server:
        async with mail_client() as client:
            await client.put(
                OBJECT_PATH, json=setting(server.port, "Plain", auth=True), headers=ADMIN
            )
            # A password sent without updatePassword is ignored, as in a PUT.
            response = await invoke(client, action(password=b64(b"ignored-pw")))
    assert response.json()["state"] == "success", response.json()
    assert server.received[0].login == USER.encode()


async def failed_job(client: httpx.AsyncClient, **email_setting: Any) -> dict[str, Any]:
    response = await invoke(client, action(**email_setting))
    assert response.status_code == 200
    job = response.json()
    assert job["state"] == "failed"
    assert "\n" not in job["result"][0]["message"]
    result: dict[str, Any] = job["result"][0]
    return result


async def test_connection_refused(mail_client: Callable[..., httpx.AsyncClient]) -> None:
    with closed_port() as port:
        async with mail_client() as client:
            result = await failed_job(client, hostname="127.0.0.1", portNumber=port)
    assert result["failureKind"] == "connection_refused"


async def test_dns_failure(mail_client: Callable[..., httpx.AsyncClient]) -> None:
    async with mail_client() as client:
        result = await failed_job(client, hostname="no-such-host.invalid", portNumber=25)
    assert result["failureKind"] == "dns_failure"


async def test_auth_rejected_never_shows_the_password(
    mail_client: Callable[..., httpx.AsyncClient],
) -> None:
    with start_smtp_server(credentials=(USER, b"the-right-one")) as server:
        async with mail_client() as client:
            await client.put(
                OBJECT_PATH, json=setting(server.port, "Plain", auth=True), headers=ADMIN
            )
            response = await invoke(client, action())
    result = response.json()["result"][0]
    assert result["failureKind"] == "auth_rejected"
    assert PASSWORD.decode() not in response.text and b64(PASSWORD) not in response.text


async def test_recipient_refused(mail_client: Callable[..., httpx.AsyncClient]) -> None:
    handler = RecordingHandler(refuse_recipients=["dev@example.org"])
    with start_smtp_server(handler=handler) as server:
        async with mail_client() as client:
            result = await failed_job(client, hostname="127.0.0.1", portNumber=server.port)
    assert result["failureKind"] == "recipient_refused"
    assert "dev@example.org" in result["message"]
    assert server.received == []


async def test_sender_refused(mail_client: Callable[..., httpx.AsyncClient]) -> None:
    with start_smtp_server(handler=RecordingHandler(refuse_sender=True)) as server:
        async with mail_client() as client:
            result = await failed_job(client, hostname="127.0.0.1", portNumber=server.port)
    assert result["failureKind"] == "sender_refused"


async def test_starttls_not_offered(mail_client: Callable[..., httpx.AsyncClient]) -> None:
    with start_smtp_server() as server:
        async with mail_client() as client:
            result = await failed_job(
                client, hostname="127.0.0.1", portNumber=server.port, secureConnection="STARTTLS"
            )
    assert result["failureKind"] == "starttls_not_offered"
    assert server.received == []


async def test_untrusted_certificate_fails_then_verification_can_be_off(
    make_client: Callable[..., httpx.AsyncClient], tls_files: TlsFiles
) -> None:
    with start_smtp_server(security="TLS", tls=tls_files) as server:
        body: dict[str, Any] = {
            "hostname": "127.0.0.1",
            "portNumber": server.port,
            "secureConnection": "TLS",
        }
        async with make_client(smtp_timeout=2.0) as client:
            result = await failed_job(client, **body)
        assert result["failureKind"] == "tls_failed"
        async with make_client(smtp_timeout=2.0, smtp_verify_tls=False) as client:
            response = await invoke(client, action(**body))
        assert response.json()["state"] == "success"


async def test_timeout_while_other_requests_are_served(
    mail_client: Callable[..., httpx.AsyncClient],
) -> None:
    finished: list[str] = []

    async def slow_mail(client: httpx.AsyncClient, port: int) -> dict[str, Any]:
        result = await failed_job(client, hostname="127.0.0.1", portNumber=port)
        finished.append("mail")
        return result

    async def quick_get(client: httpx.AsyncClient) -> int:
        await asyncio.sleep(0.2)
        response = await client.get(SETTINGS_PATH, headers=ADMIN)
        finished.append("get")
        return response.status_code

    with silent_server() as port:
        async with mail_client(smtp_timeout=1.5) as client:
            result, status = await asyncio.gather(slow_mail(client, port), quick_get(client))
    assert result["failureKind"] == "timeout"
    assert status == 200
    assert finished == ["get", "mail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"parameters": []},
        {"parameters": [{"destinationAddresses": ["a@example.com"]}] * 2},
        {"parameters": [{"destinationAddresses": []}]},
        {"parameters": [{"destinationAddresses": ["not-an-address"]}]},
        # A final dot in the domain passed the check and then broke the message: a 500.
        {"parameters": [{"destinationAddresses": ["ops@example.com."]}]},
        {"parameters": [{"destinationAddresses": "a@example.com"}]},
        {"parameters": [{"destinationAddresses": ["a@example.com"], "extra": 1}]},
        {"parameters": [{"destinationAddresses": ["a@example.com"], "emailSetting": {"port": 1}}]},
        {
            "parameters": [
                {"destinationAddresses": ["a@example.com"], "emailSetting": {"portNumber": 0}}
            ]
        },
        {
            "parameters": [
                {
                    "destinationAddresses": ["a@example.com"],
                    "emailSetting": {"updatePassword": True},
                }
            ]
        },
        {
            "parameters": [
                {
                    "destinationAddresses": ["a@example.com"],
                    "emailSetting": {"authenticationEnabled": True},
                }
            ]
        },
        {"name": "somethingElse", "parameters": [{"destinationAddresses": ["a@example.com"]}]},
        {"method": "GET", "parameters": [{"destinationAddresses": ["a@example.com"]}]},
        {"parameters": [{"destinationAddresses": ["a@example.com"]}], "bogus": True},
        {"parameters": [{"destinationAddresses": [f"u{n}@example.com" for n in range(101)]}]},
        [],
    ],
)
async def test_invalid_action_is_400_not_a_failed_job(
    client: httpx.AsyncClient, runtime: Runtime, body: Any
) -> None:
    response = await invoke(client, body)
    assert response.status_code == 400, response.text
    assert response.json()["application"] == "Analytics"
    with runtime.db.session() as session:
        assert list(session.scalars(select(TestMailRow))) == []


async def test_malformed_invoke_body_is_generic_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        INVOKE, content=b"{nope", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["messageID"] == "generic error"


async def test_capture_mode_connects_nowhere_and_records(
    make_client: Callable[..., httpx.AsyncClient], runtime: Runtime
) -> None:
    with closed_port() as port:
        async with make_client(test_mail_mode="capture") as client:
            await client.put(OBJECT_PATH, json=setting(port, "TLS", auth=True), headers=ADMIN)
            response = await invoke(client, action())
    job = response.json()
    assert job["state"] == "success"
    assert "captured" in job["result"][0]["message"]
    with runtime.db.session() as session:
        [record] = session.scalars(select(TestMailRow))
        stored = session.scalars(select(EmailSettingRow)).one()
    assert record.job_id == job["instanceID"]
    assert record.mode == "capture"
    assert json.loads(record.recipients) == DESTINATIONS
    assert record.user_id == USER and record.port_number == port
    assert "To: ops@example.com, dev@example.org" in record.message
    assert stored.secure_connection == "TLS"
    for column in TestMailRow.__table__.columns:
        value = str(getattr(record, column.key))
        assert PASSWORD.decode() not in value and b64(PASSWORD) not in value


async def test_every_smtp_attempt_is_recorded(
    mail_client: Callable[..., httpx.AsyncClient], runtime: Runtime
) -> None:
    with closed_port() as port:
        async with mail_client() as client:
            job = await invoke(client, action(hostname="127.0.0.1", portNumber=port))
    with runtime.db.session() as session:
        [record] = session.scalars(select(TestMailRow))
    assert record.job_id == job.json()["instanceID"]
    assert record.mode == "smtp" and record.state == "failed"
    assert record.failure == "connection_refused"
