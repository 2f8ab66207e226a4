"""The edge guard's rules: Host, Origin and the control token, around a stand-in app."""

from __future__ import annotations

import json

import pytest

from analytics_mock.api.edge_guard import EdgeGuard, EdgePolicy, is_loopback_host
from tests.support.edge_guard import TOKEN, assert_refused, call, stand_in
from tests.support.helpers import asgi_call

pytestmark = pytest.mark.anyio

LOOPBACK = EdgePolicy(loopback_bind=True)
OPEN_BIND = EdgePolicy(loopback_bind=False)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:22015",
        "127.0.0.1",
        "127.9.8.7:1",
        "localhost:22015",
        "LOCALHOST",
        "app.localhost:22015",
        "[::1]:22015",
        "[::1]",
    ],
)
@pytest.mark.parametrize("policy", [LOOPBACK, OPEN_BIND], ids=["loopback", "open"])
async def test_loopback_names_are_always_answered(policy: EdgePolicy, host: str) -> None:
    response = await call(policy, Host=host)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "host",
    [
        "evil.example.com",
        "evil.example.com:22015",
        "rebind.127.0.0.1.nip.io:22015",
        "analytics-mock:22015",  # a single label: not loopback
        "10.0.0.5:22015",
        "[fd00::5]:22015",
        "127.0.0.1.evil.example.com",
        "",
        "localhost@evil.example.com",
    ],
)
async def test_a_loopback_bind_refuses_other_hosts(host: str) -> None:
    assert_refused(await call(LOOPBACK, Host=host), 403, "KNAQ20302-E")
    assert_refused(await call(LOOPBACK, "/_mock/state", Host=host), 403, "KNAQ20302-E")


@pytest.mark.parametrize(
    "host", ["analytics-mock:22015", "mock", "10.0.0.5:22015", "[fd00::5]:22015", "172.17.0.2"]
)
async def test_an_open_bind_answers_addresses_and_single_label_names(host: str) -> None:
    assert (await call(OPEN_BIND, Host=host)).status_code == 200


@pytest.mark.parametrize("host", ["evil.example.com", "mock.ci.example.com:22015", "a.b"])
async def test_an_open_bind_refuses_dotted_names_nobody_allowed(host: str) -> None:
    assert_refused(await call(OPEN_BIND, Host=host), 403, "KNAQ20302-E")


@pytest.mark.parametrize("loopback", [True, False])
async def test_the_operator_allows_names_exactly_by_domain_or_all(loopback: bool) -> None:
    exact = EdgePolicy(loopback, frozenset({"mock.ci.example.com"}))
    assert (await call(exact, Host="mock.ci.example.com:22015")).status_code == 200
    assert (await call(exact, Host="MOCK.ci.example.com")).status_code == 200
    assert_refused(await call(exact, Host="other.example.com"), 403, "KNAQ20302-E")
    domain = EdgePolicy(loopback, frozenset({".example.com"}))
    assert (await call(domain, Host="example.com")).status_code == 200
    assert (await call(domain, Host="a.b.example.com:1")).status_code == 200
    assert_refused(await call(domain, Host="example.com.evil.net"), 403, "KNAQ20302-E")
    assert_refused(await call(domain, Host="notexample.com"), 403, "KNAQ20302-E")
    anything = EdgePolicy(loopback, frozenset({"*"}))
    assert (await call(anything, Host="whatever.example.org")).status_code == 200


@pytest.mark.parametrize("policy", [LOOPBACK, OPEN_BIND], ids=["loopback", "open"])
@pytest.mark.parametrize("path", ["/_mock/reset", "/Analytics/v1/objects/EmailServerSettings"])
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example.com"},
        {"Origin": "http://127.0.0.1:3000"},  # another port is another origin
        {"Origin": "null"},
        {"Origin": "file://"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:22015", "Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_cross_site_browser_requests_are_refused(
    policy: EdgePolicy, path: str, headers: dict[str, str]
) -> None:
    assert_refused(await call(policy, path, **headers), 403, "KNAQ20303-E")


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:22015"},
        {"Origin": "https://127.0.0.1:22015", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar
    ],
)
async def test_same_origin_requests_pass(headers: dict[str, str]) -> None:
    assert (await call(LOOPBACK, "/_mock/state", **headers)).status_code == 200


async def test_an_allowed_host_may_be_the_origin() -> None:
    policy = EdgePolicy(True, frozenset({"dashboard.example.com"}))
    response = await call(policy, "/_mock/state", Origin="https://dashboard.example.com")
    assert response.status_code == 200


WITH_TOKEN = EdgePolicy(loopback_bind=False, control_token=TOKEN.encode())


# `/_mock` and `/_mock/` only redirect to the dashboard (tests/api/test_ui.py).
@pytest.mark.parametrize("path", ["/_mock/state", "/_mock/ui/x", "/_mock/no-such-thing"])
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
async def test_control_calls_need_the_token(path: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await call(WITH_TOKEN, path, **headers)
    assert_refused(response, 401, "KNAQ20101-E")
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert TOKEN not in response.text


async def test_the_token_opens_the_control_api_and_nothing_else_needs_it() -> None:
    assert (await call(WITH_TOKEN, "/_mock/state", Authorization=f"Bearer {TOKEN}")).is_success
    assert (await call(WITH_TOKEN, "/_mock/state", Authorization=f"bearer  {TOKEN} ")).is_success
    assert (await call(WITH_TOKEN, "/Analytics/v1/objects/EmailServerSettings")).is_success
    assert (await call(WITH_TOKEN, "/_mockery")).is_success  # not under /_mock/
    assert (await call(WITH_TOKEN, "/healthz", Host="evil.example.com")).is_success


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("example.com", False),
    ],
)
def test_loopback_binds_are_told_apart(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("name", [b"host", b"origin"])
@pytest.mark.parametrize("evil_first", [True, False])
async def test_two_hosts_or_two_origins_are_refused_whichever_comes_first(
    name: bytes, evil_first: bool
) -> None:
    own, evil = (
        (b"127.0.0.1:22015", b"evil.example")
        if name == b"host"
        else (
            b"http://127.0.0.1:22015",
            b"http://evil.example",
        )
    )
    pair = [(name, evil), (name, own)] if evil_first else [(name, own), (name, evil)]
    headers = [*pair] if name == b"host" else [(b"host", b"127.0.0.1:22015"), *pair]
    start, answer = await asgi_call(EdgeGuard(stand_in, LOOPBACK), "POST", "/_mock/reset", headers)
    assert start["status"] == 400, answer
    assert json.loads(answer["body"])["messageID"] == "KNAQ20006-E"
