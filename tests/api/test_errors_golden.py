"""Golden tests: for each error kind, the exact status, headers and body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH, basic

pytestmark = pytest.mark.anyio

COMMON = {
    "cache-control": "no-cache",
    "x-frame-options": "SAMEORIGIN",
    "x-xss-protection": "1; mode=block",
    "x-content-type-options": "nosniff",
    "content-security-policy": "frame-ancestors 'self'",
    "content-type": "application/json",
}


def envelope(source: str, message_id: str, text: str) -> dict[str, str]:
    return {
        "errorSource": source,
        "message": f"{message_id} {text}",
        "messageID": message_id,
        "application": "Analytics",
    }


def assert_common_headers(response: httpx.Response) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, name


JSON = {"Content-Type": "application/json"}
# The order of checks [pick]: 412, 413 (declared length), 501 (transfer coding), 404/405
# routing, 406, then 401, 403, 415 and 400; those before 401 are answered before authentication.
PRE_AUTHENTICATION = {404, 405, 406, 412, 413, 501}

CASES: list[tuple[str, str, str, dict[str, str], bytes | None, int, dict[str, str]]] = [
    (
        "generic error",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON},
        b"{not json",
        400,
        envelope(OBJECT_PATH, "generic error", "The request body is not valid JSON."),
    ),
    (
        "empty body",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON},
        b"",
        400,
        envelope(OBJECT_PATH, "generic error", "The request body is empty."),
    ),
    (
        "not an object",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON},
        b"[]",
        400,
        envelope(
            OBJECT_PATH, "KNAQ20001-E", "The request body must be a JSON object (EmailSetting)."
        ),
    ),
    (
        "unknown member",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON},
        b'{"port": 25}',
        400,
        envelope(OBJECT_PATH, "KNAQ20002-E", 'The member "port" is not a member of EmailSetting.'),
    ),
    (
        "invalid member",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON},
        b'{"portNumber": 0}',
        400,
        envelope(
            OBJECT_PATH,
            "KNAQ20003-E",
            'The member "portNumber" must be an integer from 1 to 65535.',
        ),
    ),
    (
        "missing member",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON},
        b'{"updatePassword": true}',
        400,
        envelope(
            OBJECT_PATH,
            "KNAQ20004-E",
            'The member "password" is required when updatePassword is true.',
        ),
    ),
    (
        "invalid parameter",
        "GET",
        SETTINGS_PATH + "?$count=0",
        ADMIN,
        None,
        400,
        envelope(
            SETTINGS_PATH,
            "KNAQ20005-E",
            'The query parameter "$count" must be an integer from 1 to 2147483647.',
        ),
    ),
    (
        "no credentials",
        "GET",
        SETTINGS_PATH,
        {},
        None,
        401,
        envelope(SETTINGS_PATH, "KNAQ20101-E", "Authentication failed."),
    ),
    (
        "unknown path",
        "GET",
        "/Analytics/v1/objects/Nothing",
        ADMIN,
        None,
        404,
        envelope(
            "/Analytics/v1/objects/Nothing", "KNAQ20401-E", "The requested resource was not found."
        ),
    ),
    (
        "unknown object",
        "PUT",
        SETTINGS_PATH + "/nobody",
        {**ADMIN, **JSON},
        b"{}",
        404,
        envelope(SETTINGS_PATH + "/nobody", "KNAQ20402-E", 'The object "nobody" was not found.'),
    ),
    (
        "method",
        "GET",
        OBJECT_PATH,
        ADMIN,
        None,
        405,
        envelope(OBJECT_PATH, "KNAQ20501-E", "The method is not allowed for this resource."),
    ),
    (
        "accept",
        "GET",
        SETTINGS_PATH,
        {**ADMIN, "Accept": "text/html"},
        None,
        406,
        envelope(SETTINGS_PATH, "KNAQ20601-E", "The Accept header must admit application/json."),
    ),
    (
        "content type",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, "Content-Type": "text/plain"},
        b"{}",
        415,
        envelope(
            OBJECT_PATH,
            "KNAQ21501-E",
            "The Content-Type of the request must be application/json.",
        ),
    ),
    (
        "content coding",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON, "Content-Encoding": "gzip"},
        b"{}",
        415,
        envelope(OBJECT_PATH, "KNAQ21501-E", "The request body must not have a Content-Encoding."),
    ),
    (
        "transfer coding",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON, "Transfer-Encoding": "gzip, chunked"},
        b"{}",
        501,
        envelope(
            OBJECT_PATH,
            "KNAQ25101-E",
            "The Transfer-Encoding of the request must be chunked alone.",
        ),
    ),
    (
        "too large",
        "PUT",
        OBJECT_PATH,
        {**ADMIN, **JSON},
        b" " * (1024 * 1024 + 1),
        413,
        envelope(OBJECT_PATH, "KNAQ21301-E", "The request body is larger than 1048576 bytes."),
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "headers", "content", "status", "body"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_error_golden(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    content: bytes | None,
    status: int,
    body: dict[str, Any],
) -> None:
    response = await client.request(method, path, headers=headers, content=content)
    assert response.status_code == status
    assert response.json() == body
    assert response.content == response.content.strip()
    assert_common_headers(response)
    if status == 401:
        assert response.headers["www-authenticate"] == 'Basic realm="Analytics"'
    elif status in PRE_AUTHENTICATION and body["messageID"] != "KNAQ20402-E":
        # Refused before the credentials were looked at, so no session token is handed out.
        assert "www-authenticate" not in response.headers
    else:
        assert response.headers["www-authenticate"].startswith("HSSO ")
    if status == 405:
        assert response.headers["allow"] == "PUT"


async def test_forbidden_for_a_modify_user(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Any
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users:\n  - name: mod\n    password: modpass\n    permissions: [Modify]\n")
    async with make_client(users_file=users) as client:
        response = await client.get(SETTINGS_PATH, headers=basic("mod", "modpass"))
    assert response.status_code == 403
    assert response.json() == envelope(
        SETTINGS_PATH, "KNAQ20301-E", "The user does not have the permission for this operation."
    )
    assert response.headers["www-authenticate"].startswith("HSSO ")
    assert_common_headers(response)


async def test_maintenance_is_412(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with make_client(maintenance=True) as client:
        response = await client.get(SETTINGS_PATH, headers=ADMIN)
    assert response.status_code == 412
    assert response.json() == envelope(SETTINGS_PATH, "KNAQ21201-E", "The server is not available.")
    assert_common_headers(response)


async def test_post_on_collection_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.post(SETTINGS_PATH, headers={**ADMIN, **JSON}, content=b"{}")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


async def test_error_source_is_the_path_as_sent(client: httpx.AsyncClient) -> None:
    response = await client.put(
        SETTINGS_PATH + "/a%20b%2Fc", headers={**ADMIN, **JSON}, content=b"{}"
    )
    assert response.status_code == 404
    assert response.json()["errorSource"] == SETTINGS_PATH + "/a%20b%2Fc"


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 65536

    response = await client.put(OBJECT_PATH, headers={**ADMIN, **JSON}, content=chunks())
    assert response.status_code == 413
    assert response.json()["messageID"] == "KNAQ21301-E"


@pytest.mark.parametrize(
    "accept",
    ["application/json", "*/*", "application/*", "text/html, application/json;q=0.5", ""],
)
async def test_acceptable_accept_headers(client: httpx.AsyncClient, accept: str) -> None:
    response = await client.get(SETTINGS_PATH, headers={**ADMIN, "Accept": accept})
    assert response.status_code == 200


@pytest.mark.parametrize("accept", ["text/plain", "application/json;q=0", "application/xml"])
async def test_unacceptable_accept_headers(client: httpx.AsyncClient, accept: str) -> None:
    response = await client.get(SETTINGS_PATH, headers={**ADMIN, "Accept": accept})
    assert response.status_code == 406


@pytest.mark.parametrize(
    "content_type", [None, "text/json", "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_unsupported_content_types(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = dict(ADMIN)
    if content_type:
        headers["Content-Type"] = content_type
    response = await client.put(OBJECT_PATH, headers=headers, content=b"{}")
    assert response.status_code == 415


@pytest.mark.parametrize(
    "codings",
    [
        [("Content-Encoding", "gzip")],
        [("Content-Encoding", "identity"), ("Content-Encoding", "br")],  # two header lines
    ],
)
async def test_a_json_body_with_a_content_coding_is_415(
    client: httpx.AsyncClient, codings: list[tuple[str, str]]
) -> None:
    headers = [*ADMIN.items(), *JSON.items(), *codings]
    response = await client.put(OBJECT_PATH, headers=headers, content=b'{"portNumber": 2999}')
    assert response.status_code == 415
    stored = (await client.get(SETTINGS_PATH, headers=ADMIN)).json()["data"][0]
    assert stored["portNumber"] != 2999


async def test_json_content_type_with_charset_is_fine(client: httpx.AsyncClient) -> None:
    response = await client.put(
        OBJECT_PATH,
        headers={**ADMIN, "Content-Type": "Application/JSON; charset=utf-8"},
        content=b"{}",
    )
    assert response.status_code == 200


async def test_success_headers(client: httpx.AsyncClient) -> None:
    response = await client.get(SETTINGS_PATH, headers=ADMIN)
    assert response.status_code == 200
    assert_common_headers(response)
    assert response.headers["www-authenticate"].startswith("HSSO ")


@pytest.mark.parametrize(
    "extra",
    [{"X-Pad": "a" * 17_000}, {f"X-Pad-{i}": "b" * 40 for i in range(400)}],
    ids=["one huge header", "many headers"],
)
async def test_a_head_over_16_kib_is_400_before_anything_else(
    make_client: Callable[..., httpx.AsyncClient], extra: dict[str, str]
) -> None:
    # Even in maintenance and with a valid login: the HTTP layer refuses such a head first.
    async with make_client(maintenance=True) as client:
        response = await client.get(SETTINGS_PATH, headers={**ADMIN, **extra})
        journal = await client.get("/_mock/requests")
    assert response.status_code == 400
    assert response.json() == envelope(
        SETTINGS_PATH, "KNAQ20007-E", "The request line and headers are larger than 16384 bytes."
    )
    assert_common_headers(response)
    assert "www-authenticate" not in response.headers
    assert journal.json()["requests"] == []  # like a head the HTTP layer refuses


async def test_a_head_just_under_the_limit_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get(SETTINGS_PATH, headers={**ADMIN, "X-Pad": "a" * 15_000})
    assert response.status_code == 200
