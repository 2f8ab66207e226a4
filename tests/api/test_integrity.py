"""Cross-cutting guarantees: refusals change nothing, secrets never leak, OpenAPI is complete."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from analytics_mock.db.models import EmailSettingRow, UserRow
from analytics_mock.runtime import Runtime
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH, basic

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}


def snapshot(runtime: Runtime) -> list[Any]:
    """Every stored setting and account, column by column."""
    with runtime.db.session() as session:
        rows: list[Any] = []
        for model in (EmailSettingRow, UserRow):
            for row in session.scalars(select(model)):
                rows.append(tuple(getattr(row, c.key) for c in model.__table__.columns))
        return rows


REJECTED: list[tuple[str, str, dict[str, str], bytes | None]] = [
    ("PUT", OBJECT_PATH, {**ADMIN, **JSON}, b'{"hostname": "x.example.com", "portNumber": 0}'),
    ("PUT", OBJECT_PATH, {**ADMIN, **JSON}, b'{"hostname": "x.example.com", "bogus": 1}'),
    (
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON},
        b'{"hostname": "x.example.com", "updatePassword": true}',
    ),
    (
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON},
        b'{"hostname": "x.example.com", "updatePassword": true, "password": "!!"}',
    ),
    ("PUT", OBJECT_PATH, {**ADMIN, **JSON}, b'{"authenticationEnabled": true}'),
    ("PUT", OBJECT_PATH, {**ADMIN, **JSON}, b"{"),
    ("PUT", OBJECT_PATH, {**ADMIN, **JSON}, b"[1]"),
    ("PUT", OBJECT_PATH, {**ADMIN, "Content-Type": "text/plain"}, b'{"portNumber": 26}'),
    ("PUT", OBJECT_PATH, {**ADMIN, **JSON, "Accept": "text/html"}, b'{"portNumber": 26}'),
    ("PUT", OBJECT_PATH, JSON, b'{"portNumber": 26}'),
    ("PUT", OBJECT_PATH, {**basic("system", "bad"), **JSON}, b'{"portNumber": 26}'),
    ("PUT", SETTINGS_PATH + "/missing", {**ADMIN, **JSON}, b'{"portNumber": 26}'),
    ("POST", SETTINGS_PATH, {**ADMIN, **JSON}, b'{"portNumber": 26}'),
    ("PUT", OBJECT_PATH, {**ADMIN, **JSON}, b'{"portNumber": 26}' + b" " * (1024 * 1024)),
    ("GET", SETTINGS_PATH + "?$query=portNumber%20eq", ADMIN, None),
]


async def test_rejected_requests_change_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Give the store something worth protecting first.
    body = {"updatePassword": True, "password": "c2VjcmV0", "portNumber": 2525}
    assert (await client.put(OBJECT_PATH, json=body, headers=ADMIN)).status_code == 200
    before = snapshot(runtime)
    for method, path, headers, content in REJECTED:
        response = await client.request(method, path, headers=headers, content=content)
        assert response.status_code >= 400, (method, path, content)
        assert snapshot(runtime) == before, (method, path, content)


async def test_secrets_never_leak(
    client: httpx.AsyncClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    smtp_password = "smtp-Pa55word-unique"
    encoded = base64.b64encode(smtp_password.encode()).decode()
    responses = [
        await client.put(
            OBJECT_PATH,
            json={"updatePassword": True, "password": encoded, "userId": "mailer"},
            headers=ADMIN,
        ),
        await client.put(
            OBJECT_PATH,
            json={"updatePassword": True, "password": encoded + "!"},
            headers=ADMIN,
        ),
        await client.put(OBJECT_PATH, json={"password": 5, "portNumber": 0}, headers=ADMIN),
        await client.get(SETTINGS_PATH, headers=basic("system", "wrong-Pa55-unique")),
        await client.get(SETTINGS_PATH, headers=ADMIN),
    ]
    token = responses[-1].headers["www-authenticate"].split(" ", 1)[1]
    secrets = [
        smtp_password,
        encoded,
        "wrong-Pa55-unique",
        "manager",
        ADMIN["Authorization"].split(" ", 1)[1],
        basic("system", "wrong-Pa55-unique")["Authorization"].split(" ", 1)[1],
    ]
    for response in responses:
        for secret in secrets:
            assert secret not in response.text
    logged = "\n".join(record.getMessage() for record in caplog.records)
    logged += "\n".join(str(record.args) for record in caplog.records)
    for secret in [*secrets, token]:
        assert secret not in logged
    with runtime.db.session() as session:
        stored = session.scalars(select(EmailSettingRow)).one()
        assert stored.password_encrypted is not None
        assert smtp_password.encode() not in stored.password_encrypted


async def test_openapi_describes_the_operations(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    listing = paths["/Analytics/v1/objects/EmailServerSettings"]["get"]
    update = paths["/Analytics/v1/objects/EmailServerSettings/{id}"]["put"]
    assert {p["name"] for p in listing["parameters"]} >= {
        "$offset",
        "$count",
        "paging",
        "$order-by",
        "$query",
    }
    # page and pageSize travel together, as one object parameter exploded into the query.
    paging = next(p for p in listing["parameters"] if p["name"] == "paging")
    assert (paging["style"], paging["explode"]) == ("form", True)
    assert paging["schema"]["required"] == ["page", "pageSize"]
    body_ref = update["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body_schema = document["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert set(body_schema["properties"]) == {
        "instanceID",
        "hostname",
        "authenticationEnabled",
        "userId",
        "updatePassword",
        "password",
        "senderAddress",
        "secureConnection",
        "portNumber",
    }
    assert body_schema["additionalProperties"] is False
    for operation in (listing, update):
        assert {"200", "400", "401", "403", "412", "500"} <= set(operation["responses"])
    assert "422" not in str(document)
    invoke = paths["/Analytics/v1/services/EmailServerSettings/actions/sendTestMail/invoke"]["post"]
    action_ref = invoke["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert action_ref.rsplit("/", 1)[1] in document["components"]["schemas"]
    assert "TestMailIn" in document["components"]["schemas"]
    assert "Job" in document["components"]["schemas"]
    setting = document["components"]["schemas"]["EmailSetting"]
    assert set(setting["required"]) == {
        "instanceID",
        "hostname",
        "authenticationEnabled",
        "userId",
        "senderAddress",
        "secureConnection",
        "portNumber",
    }
