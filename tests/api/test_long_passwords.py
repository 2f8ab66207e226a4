"""An over-long password is a wrong password: the same 401, whoever the account."""

from __future__ import annotations

import httpx
import pytest

from tests.support.helpers import SETTINGS_PATH, basic

pytestmark = pytest.mark.anyio

# passlib refuses a longer password before hashing it.
MAX_PASSWORD_BYTES = 4096


@pytest.mark.parametrize("user", ["system", "nobody", "\x01control"])
@pytest.mark.parametrize(
    "password",
    ["m" * (MAX_PASSWORD_BYTES + 1), "é" * (MAX_PASSWORD_BYTES // 2 + 1), "x" * 11_000],
)
async def test_an_over_long_password_is_an_ordinary_401(
    client: httpx.AsyncClient, user: str, password: str
) -> None:
    response = await client.get(SETTINGS_PATH, headers=basic(user, password))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Basic realm="Analytics"'
    assert response.json()["message"] == "KNAQ20101-E Authentication failed."


async def test_the_longest_accepted_password_still_verifies(client: httpx.AsyncClient) -> None:
    response = await client.get(SETTINGS_PATH, headers=basic("system", "m" * MAX_PASSWORD_BYTES))
    assert response.status_code == 401
    assert (await client.get(SETTINGS_PATH, headers=basic())).status_code == 200
