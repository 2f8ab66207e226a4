"""PUT /objects/EmailServerSettings/{id}: partial update, coercion, password semantics."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from analytics_mock.db.models import EmailSettingRow
from analytics_mock.runtime import Runtime
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH

pytestmark = pytest.mark.anyio

DEFAULT = {
    "instanceID": "mailServerSetting#0",
    "hostname": "localhost",
    "authenticationEnabled": False,
    "userId": None,
    "senderAddress": "analytics@localhost",
    "secureConnection": "Plain",
    "portNumber": 25,
}

# The vendor's own example request, with its numeric instanceID.
VENDOR_EXAMPLE = {
    "instanceID": 1234568790,
    "hostname": "172.17.17.116",
    "authenticationEnabled": True,
    "userId": "user1",
    "updatePassword": True,
    "password": "a2FzaGltYTE=",
    "senderAddress": "user@example.com",
    "secureConnection": "Plain",
    "portNumber": 25,
}


@pytest.fixture(autouse=True, params=["update returning", "locked read and write"])
def update_statement(
    request: pytest.FixtureRequest, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test on both ways to the update: one statement, or where the database has no
    `UPDATE ... RETURNING` (SQLite before 3.35) a locked read and a write."""
    if request.param == "locked read and write":
        monkeypatch.setattr(runtime.db.engine.dialect, "update_returning", False)


async def put(client: httpx.AsyncClient, body: Any, path: str = OBJECT_PATH) -> httpx.Response:
    return await client.put(path, json=body, headers=ADMIN)


def stored(runtime: Runtime) -> dict[str, Any]:
    """Every column of the default object, password ciphertext included."""
    with runtime.db.session() as session:
        row = session.scalars(select(EmailSettingRow)).one()
        return {c.key: getattr(row, c.key) for c in EmailSettingRow.__table__.columns}


async def test_vendor_example_gets_vendor_members_back(client: httpx.AsyncClient) -> None:
    response = await put(client, VENDOR_EXAMPLE)
    assert response.status_code == 200
    assert response.json() == {
        "instanceID": "mailServerSetting#0",
        "hostname": "172.17.17.116",
        "authenticationEnabled": True,
        "userId": "user1",
        "senderAddress": "user@example.com",
        "secureConnection": "Plain",
        "portNumber": 25,
    }
    assert list(response.json()) == list(DEFAULT)
    assert response.headers["content-type"] == "application/json"


async def test_update_is_partial_and_persists(client: httpx.AsyncClient) -> None:
    first = await put(client, {"hostname": "smtp.example.com"})
    assert first.json() == {**DEFAULT, "hostname": "smtp.example.com"}
    second = await put(client, {"portNumber": 587, "hostname": None})
    assert second.json() == {**DEFAULT, "hostname": "smtp.example.com", "portNumber": 587}
    listed = await client.get(SETTINGS_PATH, headers=ADMIN)
    assert listed.json()["data"] == [second.json()]


async def test_empty_object_changes_nothing(client: httpx.AsyncClient) -> None:
    assert (await put(client, {})).json() == DEFAULT


@pytest.mark.parametrize(
    ("member", "sent", "kept"),
    [
        ("authenticationEnabled", "true", True),
        ("authenticationEnabled", "false", False),
        ("portNumber", "587", 587),
        ("portNumber", 65535, 65535),
        ("portNumber", 1, 1),
        # 25.0 is the integer 25 to JSON Schema, and so to the published document.
        ("portNumber", 25.0, 25),
        ("secureConnection", "STARTTLS", "STARTTLS"),
        ("secureConnection", "TLS", "TLS"),
        ("hostname", "::1", "::1"),
        ("hostname", "192.0.2.10", "192.0.2.10"),
        ("hostname", "mail-1.example.co.jp.", "mail-1.example.co.jp."),
        ("senderAddress", "first.last+tag@example.com", "first.last+tag@example.com"),
        ("senderAddress", "ops@[192.0.2.1]", "ops@[192.0.2.1]"),
        ("userId", "日本語ユーザー", "日本語ユーザー"),
    ],
)
async def test_accepted_values(
    client: httpx.AsyncClient, member: str, sent: Any, kept: Any
) -> None:
    body: dict[str, Any] = {member: sent}
    if member == "authenticationEnabled" and kept:
        body["userId"] = "mailer"
    response = await put(client, body)
    assert response.status_code == 200, response.text
    assert response.json()[member] == kept


@pytest.mark.parametrize("instance_id", ["anything", 42, 4.5, None, "mailServerSetting#9"])
async def test_instance_id_member_is_ignored(client: httpx.AsyncClient, instance_id: Any) -> None:
    response = await put(client, {"instanceID": instance_id, "portNumber": 2525})
    assert response.status_code == 200
    assert response.json()["instanceID"] == "mailServerSetting#0"


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("hostname", 17),
        ("hostname", ""),
        ("hostname", "bad host"),
        ("hostname", "-leading.example.com"),
        ("hostname", "a" * 64 + ".example.com"),
        ("hostname", "1.2.3.999"),
        ("hostname", "x" * 256),
        ("hostname", ["a"]),
        ("authenticationEnabled", 1),
        ("authenticationEnabled", 0),
        ("authenticationEnabled", "yes"),
        ("authenticationEnabled", "TRUE"),
        ("updatePassword", 1),
        ("userId", 5),
        ("userId", ""),
        ("userId", "x" * 256),
        ("userId", "é" * 128),
        ("userId", "tab\there"),
        ("senderAddress", "no-at-sign"),
        ("senderAddress", "two@@example.com"),
        ("senderAddress", "a" * 65 + "@example.com"),
        ("senderAddress", "user@" + "a" * 250 + ".com"),
        ("senderAddress", "ünïcode@example.com"),
        ("senderAddress", True),
        ("secureConnection", "tls"),
        ("secureConnection", "SSL"),
        ("secureConnection", 1),
        ("portNumber", 0),
        ("portNumber", 65536),
        ("portNumber", -1),
        ("portNumber", 25.5),
        ("portNumber", "abc"),
        ("portNumber", "-25"),
        ("portNumber", " 25"),
        ("portNumber", "\uff12\uff15"),  # full-width digits
        ("portNumber", True),
        ("portNumber", {"n": 25}),
        ("instanceID", True),
        ("instanceID", {"id": 1}),
    ],
)
async def test_invalid_member_is_400_naming_it(
    client: httpx.AsyncClient, runtime: Runtime, member: str, value: Any
) -> None:
    before = stored(runtime)
    response = await put(client, {"hostname": "ok.example.com", member: value})
    assert response.status_code == 400
    body = response.json()
    assert body["messageID"] == "KNAQ20003-E"
    assert f'"{member}"' in body["message"]
    assert stored(runtime) == before


async def test_unknown_member_is_named(client: httpx.AsyncClient, runtime: Runtime) -> None:
    before = stored(runtime)
    response = await put(client, {"hostName": "typo.example.com"})
    assert response.status_code == 400
    assert response.json()["messageID"] == "KNAQ20002-E"
    assert '"hostName"' in response.json()["message"]
    assert stored(runtime) == before


async def test_a_long_unknown_member_is_named_by_its_start(client: httpx.AsyncClient) -> None:
    name = "x" * 500_000
    response = await put(client, {name: 1})
    assert response.status_code == 400
    assert response.json()["messageID"] == "KNAQ20002-E"
    assert f'"{"x" * 100}..."' in response.json()["message"]
    assert len(response.content) < 1000


async def test_an_integer_too_long_for_python_is_out_of_range_not_malformed(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    before = stored(runtime)
    raw = b'{"portNumber": ' + b"9" * 5000 + b"}"
    response = await client.put(
        OBJECT_PATH, content=raw, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["messageID"] == "KNAQ20003-E", response.text
    assert stored(runtime) == before


async def test_auth_enabled_needs_a_user_id(client: httpx.AsyncClient, runtime: Runtime) -> None:
    before = stored(runtime)
    response = await put(client, {"authenticationEnabled": True})
    assert response.status_code == 400
    assert response.json()["messageID"] == "KNAQ20004-E"
    assert '"userId"' in response.json()["message"]
    assert stored(runtime) == before
    # A stored userId satisfies the rule later on.
    await put(client, {"userId": "mailer"})
    assert (await put(client, {"authenticationEnabled": "true"})).json()["userId"] == "mailer"


async def test_user_id_kept_when_authentication_off(client: httpx.AsyncClient) -> None:
    response = await put(client, {"authenticationEnabled": False, "userId": "unused"})
    assert response.json()["userId"] == "unused"
    assert response.json()["authenticationEnabled"] is False
    # null keeps it: a stored userId cannot be cleared, only replaced.
    assert (await put(client, {"userId": None})).json()["userId"] == "unused"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def test_password_is_stored_encrypted(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await put(client, {"updatePassword": True, "password": b64(b"kashima1")})
    assert response.status_code == 200
    assert "password" not in response.json() and "updatePassword" not in response.json()
    ciphertext = stored(runtime)["password_encrypted"]
    assert ciphertext and b"kashima1" not in ciphertext
    assert runtime.box.decrypt(ciphertext) == b"kashima1"


@pytest.mark.parametrize("update", [False, None, "false"])
async def test_password_ignored_unless_update_password(
    client: httpx.AsyncClient, runtime: Runtime, update: Any
) -> None:
    await put(client, {"updatePassword": True, "password": b64(b"first")})
    before = stored(runtime)["password_encrypted"]
    body: dict[str, Any] = {"password": "%%% not base64 %%%", "portNumber": 26}
    if update is not None:
        body["updatePassword"] = update
    response = await put(client, body)
    assert response.status_code == 200
    assert stored(runtime)["password_encrypted"] == before


@pytest.mark.parametrize(
    "password",
    [None, 12, "", "not base64!", "YWJ", "YW=", "YQ", "YW Jj", "YWJj\n", b64(b"x" * 256)],
)
async def test_bad_password_with_update_is_400(
    client: httpx.AsyncClient, runtime: Runtime, password: Any
) -> None:
    before = stored(runtime)
    body: dict[str, Any] = {"updatePassword": True, "hostname": "changed.example.com"}
    if password is not None:
        body["password"] = password
    response = await put(client, body)
    assert response.status_code == 400
    assert '"password"' in response.json()["message"]
    assert response.json()["messageID"] in {"KNAQ20003-E", "KNAQ20004-E"}
    assert stored(runtime) == before


async def test_password_of_255_bytes_is_accepted(client: httpx.AsyncClient) -> None:
    response = await put(client, {"updatePassword": True, "password": b64(bytes(range(255)))})
    assert response.status_code == 200


async def test_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    response = await put(client, {"portNumber": 26}, path=SETTINGS_PATH + "/mailServerSetting%231")
    assert response.status_code == 404
    assert response.json() == {
        "errorSource": "/Analytics/v1/objects/EmailServerSettings/mailServerSetting%231",
        "message": 'KNAQ20402-E The object "mailServerSetting#1" was not found.',
        "messageID": "KNAQ20402-E",
        "application": "Analytics",
    }


async def test_unencoded_hash_is_a_fragment_not_the_id(client: httpx.AsyncClient) -> None:
    # A literal "#" starts a fragment, so the path names "mailServerSetting", which is unknown.
    response = await client.put(SETTINGS_PATH + "/mailServerSetting", json={}, headers=ADMIN)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b"{'a': 1}",
        b'{"portNumber": 25,}',
        b"NaN",
        b'{"portNumber": NaN}',
        b"\xff\xfe",
    ],
)
async def test_malformed_json_is_generic_error(
    client: httpx.AsyncClient, runtime: Runtime, raw: bytes
) -> None:
    before = stored(runtime)
    response = await client.put(
        OBJECT_PATH, content=raw, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["messageID"] == "generic error"
    assert response.json()["message"].startswith("generic error ")
    assert stored(runtime) == before


async def test_deeply_nested_json_is_refused_cleanly(client: httpx.AsyncClient) -> None:
    raw = b"[" * 100_000 + b"]" * 100_000
    response = await client.put(
        OBJECT_PATH, content=raw, headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("document", [[], ["a"], "text", 25, True, None])
async def test_json_that_is_not_an_object_is_400(client: httpx.AsyncClient, document: Any) -> None:
    response = await client.put(
        OBJECT_PATH,
        content=json.dumps(document).encode(),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["messageID"] == "KNAQ20001-E"


async def test_refusals_come_in_the_vendors_order(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    before = stored(runtime)
    bad_password = {"updatePassword": True, "password": "not base64!"}
    unknown = SETTINGS_PATH + "/mailServerSetting%231"
    # An unknown object before any member; a contradiction between members before the password.
    response = await put(client, {**bad_password, "authenticationEnabled": True}, path=unknown)
    assert response.status_code == 404
    response = await put(client, {**bad_password, "authenticationEnabled": True})
    assert response.status_code == 400 and '"userId"' in response.json()["message"]
    response = await put(client, {**bad_password, "hostname": "changed.example.com"})
    assert response.status_code == 400 and '"password"' in response.json()["message"]
    assert stored(runtime) == before
