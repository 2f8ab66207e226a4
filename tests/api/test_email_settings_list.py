"""GET /objects/EmailServerSettings: Collections envelope, paging, $query and $order-by."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from analytics_mock.db.models import EmailSettingRow
from analytics_mock.runtime import Runtime
from tests.support.helpers import ADMIN, SETTINGS_PATH

pytestmark = pytest.mark.anyio


def add_settings(runtime: Runtime, count: int) -> None:
    """Store `count` more objects, mailServerSetting#1.., with varied members."""
    with runtime.db.session(write=True) as session:
        for n in range(1, count + 1):
            session.add(
                EmailSettingRow(
                    instance_id=f"mailServerSetting#{n}",
                    hostname=f"smtp{n % 3}.example.com" if n % 2 else f"Mail{n}.example.org",
                    port_number=[25, 587, 465][n % 3],
                    secure_connection=["Plain", "STARTTLS", "TLS"][n % 3],
                    authentication_enabled=n % 2 == 0,
                    user_id=f"user{n}" if n % 2 == 0 else None,
                    password_encrypted=None,
                    sender_address=f"sender{n}@example.com",
                )
            )


async def get(client: httpx.AsyncClient, params: dict[str, Any] | str) -> httpx.Response:
    return await client.get(SETTINGS_PATH, params=params, headers=ADMIN)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["instanceID"] for item in response.json()["data"]]


async def test_fresh_store_lists_the_default_object(client: httpx.AsyncClient) -> None:
    response = await get(client, {})
    assert response.status_code == 200
    assert response.json() == {
        "data": [
            {
                "instanceID": "mailServerSetting#0",
                "hostname": "localhost",
                "authenticationEnabled": False,
                "userId": None,
                "senderAddress": "analytics@localhost",
                "secureConnection": "Plain",
                "portNumber": 25,
            }
        ],
        "pagination": {"page": 1, "pageSize": 100, "numPages": 1, "totalCount": 1},
        "count": 1,
    }
    assert list(response.json()) == ["data", "pagination", "count"]


async def test_offset_and_count_window(client: httpx.AsyncClient, runtime: Runtime) -> None:
    add_settings(runtime, 9)
    response = await get(client, {"$offset": "4", "$count": "3"})
    assert ids(response) == [f"mailServerSetting#{n}" for n in (4, 5, 6)]
    body = response.json()
    assert body["count"] == 10
    assert body["pagination"] == {"page": 2, "pageSize": 3, "numPages": 4, "totalCount": 10}


async def test_page_and_page_size_take_priority(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    add_settings(runtime, 9)
    response = await get(client, {"page": "2", "pageSize": "4", "$offset": "0", "$count": "1"})
    assert ids(response) == [f"mailServerSetting#{n}" for n in (4, 5, 6, 7)]
    assert response.json()["pagination"] == {
        "page": 2,
        "pageSize": 4,
        "numPages": 3,
        "totalCount": 10,
    }


async def test_window_past_the_end_keeps_pagination(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    add_settings(runtime, 2)
    response = await get(client, {"page": "9", "pageSize": "2"})
    assert response.json() == {
        "data": [],
        "pagination": {"page": 9, "pageSize": 2, "numPages": 2, "totalCount": 3},
        "count": 3,
    }
    huge = await get(client, {"$offset": "2147483647", "$count": "2147483647"})
    assert huge.json()["data"] == [] and huge.json()["count"] == 3


async def test_no_match_has_no_pagination(client: httpx.AsyncClient) -> None:
    response = await get(client, {"$query": "hostname eq 'nowhere'"})
    assert response.json() == {"data": [], "count": 0}


async def test_count_is_matches_not_window(client: httpx.AsyncClient, runtime: Runtime) -> None:
    add_settings(runtime, 9)
    response = await get(client, {"$query": "authenticationEnabled eq true", "$count": "2"})
    assert response.json()["count"] == 4
    assert ids(response) == ["mailServerSetting#2", "mailServerSetting#4"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("portNumber eq 587", [1, 4, 7]),
        ("portNumber = 587 and secureConnection eq 'STARTTLS'", [1, 4, 7]),
        ("portNumber gt 400 and portNumber lt 500", [2, 5, 8]),
        ("hostname starts 'Mail'", [2, 4, 6, 8]),
        ("hostname starts 'mail'", []),
        ("hostname ends '.org'", [2, 4, 6, 8]),
        ("userId ne 'user2'", [0, 1, 3, 4, 5, 6, 7, 8, 9]),
        ("userId in ['user2', 'user8']", [2, 8]),
        (
            "instanceID not in ['mailServerSetting#0', 'mailServerSetting#1']",
            [2, 3, 4, 5, 6, 7, 8, 9],
        ),
        (
            "(portNumber eq 25 or portNumber eq 465) and authenticationEnabled eq false",
            [0, 3, 5, 9],
        ),
        (
            "portNumber eq 25 or portNumber eq 465 and authenticationEnabled eq false",
            [0, 3, 5, 6, 9],
        ),
        ("senderAddress eq 'sender3@example.com'", [3]),
    ],
)
async def test_query_filters_in_sql(
    client: httpx.AsyncClient, runtime: Runtime, query: str, expected: list[int]
) -> None:
    add_settings(runtime, 9)
    response = await get(client, {"$query": query})
    assert ids(response) == [f"mailServerSetting#{n}" for n in expected]
    assert response.json()["count"] == len(expected)


async def test_order_by(client: httpx.AsyncClient, runtime: Runtime) -> None:
    add_settings(runtime, 5)
    response = await get(client, {"$order-by": "portNumber DESC, instanceID desc"})
    assert ids(response) == [f"mailServerSetting#{n}" for n in (4, 1, 5, 2, 3, 0)]
    by_host = await get(client, {"$order-by": "hostname"})
    hosts = [item["hostname"] for item in by_host.json()["data"]]
    # Code-point order on every backend: upper case sorts before lower case.
    assert hosts == sorted(hosts)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ("$offset=-1", "$offset"),
        ("$offset=2147483648", "$offset"),
        ("$offset=abc", "$offset"),
        ("$offset=1.5", "$offset"),
        ("$offset=", "$offset"),
        ("$count=0", "$count"),
        ("$count=2147483648", "$count"),
        ("$count=%2B5", "$count"),
        ("$count=1&$count=2", "$count"),
        ("page=1", "pageSize"),
        ("pageSize=1", "page"),
        ("page=0&pageSize=1", "page"),
        ("page=1&pageSize=0", "pageSize"),
        ("$order-by=nothing", "$order-by"),
        ("$order-by=hostname%20sideways", "$order-by"),
        ("$order-by=", "$order-by"),
        ("$query=hostname", "$query"),
        ("$query=hostnme%20eq%20'x'", "$query"),
        ("$query=portNumber%20eq%20'25'", "$query"),
        ("$query=hostname%20eq%20'unterminated", "$query"),
        ("$query=", "$query"),
        ("$query=" + "(" * 40 + "portNumber%20eq%201" + ")" * 40, "$query"),
    ],
)
async def test_bad_parameter_is_400_naming_it(
    client: httpx.AsyncClient, params: str, name: str
) -> None:
    response = await client.get(f"{SETTINGS_PATH}?{params}", headers=ADMIN)
    assert response.status_code == 400
    body = response.json()
    assert body["messageID"] == "KNAQ20005-E"
    assert f'"{name}"' in body["message"]
    assert body["errorSource"] == SETTINGS_PATH


async def test_unknown_parameters_are_ignored(client: httpx.AsyncClient) -> None:
    response = await get(client, {"fields": "hostname", "$top": "1"})
    assert response.status_code == 200


async def test_large_store_pages_in_sql(client: httpx.AsyncClient, runtime: Runtime) -> None:
    add_settings(runtime, 1500)
    response = await get(client, {"page": "15", "pageSize": "100"})
    assert ids(response) == [f"mailServerSetting#{n}" for n in range(1400, 1500)]
    assert response.json()["pagination"]["numPages"] == 16
