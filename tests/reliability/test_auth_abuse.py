"""Credentials under abuse: lockout, enumeration, timing, malformed headers, oversized requests.

In process for what is the app's (lockout, enumeration, timing, malformed `Authorization`), on
both backends; through a real `analytics-mock serve` for what only a real HTTP server meets
(oversized headers, declared and chunked bodies past the limit).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import select
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from analytics_mock.db.repositories import ControlRepository, UserRepository
from analytics_mock.passwords import verify_password
from analytics_mock.testing import AnalyticsMock, isolated_settings
from tests.support.helpers import (
    ADMIN,
    OBJECT_PATH,
    SETTINGS_PATH,
    journalled,
    read_until_closed,
)
from tests.support.reliability import (
    BACKEND_PARAMS,
    StartServer,
    Timings,
    envelope_problems,
    interleaved,
)
from tests.support.servers import ServerProcess

ALICE_PASSWORD = "Alice-Pw-4Xq9"
WRONG_PASSWORD = "Wrong-Pw-7Lm2"
INVOKE_PATH = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail/invoke"
ONE_MIB = 1024 * 1024


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def basic(raw: bytes) -> bytes:
    return b"Basic " + b64(raw)


MockFactory = Callable[..., AnalyticsMock]


@pytest.fixture(params=BACKEND_PARAMS)
def make_mock(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_database_url: Callable[[str], str],
) -> Iterator[MockFactory]:
    """In-process emulators over a fresh database of the backend, with alice (Admin)."""
    users_file = tmp_path / "users.json"
    users_file.write_text(
        json.dumps(
            {"users": [{"name": "alice", "password": ALICE_PASSWORD, "permissions": ["Admin"]}]}
        )
    )
    mocks: list[AnalyticsMock] = []

    def make(**overrides: object) -> AnalyticsMock:
        values: dict[str, object] = {
            "database_url": make_database_url(request.param),
            "secret_key": "auth-abuse-secret",
            "users_file": users_file,
        }
        values.update(overrides)
        mock = AnalyticsMock(isolated_settings(**values))
        mocks.append(mock)
        return mock

    yield make
    for mock in mocks:
        mock.close()


def status(mock: AnalyticsMock, user: str, password: str) -> int:
    response = mock.make_client(auth=(user, password)).get(SETTINGS_PATH)
    return response.status_code


def user_state(mock: AnalyticsMock, name: str) -> dict[str, object]:
    [user] = [user for user in mock.state["users"] if user["name"] == name]
    return dict(user)


# --- lockout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("lock_after", [1, 3, 10])
def test_lockout_after_n_consecutive_failures_and_not_before(
    make_mock: MockFactory, lock_after: int
) -> None:
    mock = make_mock(account_lock_num=lock_after)
    # One short of the limit, twice: a success in between resets the count.
    for _ in range(2):
        for _ in range(lock_after - 1):
            assert status(mock, "alice", WRONG_PASSWORD) == 401
        assert user_state(mock, "alice")["locked"] is False
        assert status(mock, "alice", ALICE_PASSWORD) == 200
        assert user_state(mock, "alice")["failedLogins"] == 0
    # Failures without an account behind them count against nobody.
    for _ in range(lock_after + 1):
        assert status(mock, "nobody", WRONG_PASSWORD) == 401
        bad_token = mock.make_client(auth=None).get(
            SETTINGS_PATH, headers={"Authorization": "HSSO not-a-token"}
        )
        assert bad_token.status_code == 401
    token_response = mock.make_client(auth=("alice", ALICE_PASSWORD)).get(SETTINGS_PATH)
    token = token_response.headers["www-authenticate"].removeprefix("HSSO ")

    for _ in range(lock_after):
        assert status(mock, "alice", WRONG_PASSWORD) == 401
    assert user_state(mock, "alice")["locked"] is True
    # Locked: the right password and a token issued before both fail, like a wrong password.
    wrong = mock.make_client(auth=("alice", WRONG_PASSWORD)).get(SETTINGS_PATH)
    locked = mock.make_client(auth=("alice", ALICE_PASSWORD)).get(SETTINGS_PATH)
    assert (locked.status_code, locked.content) == (401, wrong.content)
    with_token = mock.make_client(auth=None).get(
        SETTINGS_PATH, headers={"Authorization": f"HSSO {token}"}
    )
    assert with_token.status_code == 401

    mock.unlock("alice")
    assert status(mock, "alice", ALICE_PASSWORD) == 200


def test_system_is_exempt_from_the_lock(make_mock: MockFactory) -> None:
    mock = make_mock(account_lock_num=2)
    for _ in range(5):
        assert status(mock, "system", WRONG_PASSWORD) == 401
    assert status(mock, "system", "manager") == 200


# --- enumeration -----------------------------------------------------------------------------


def comparable(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    return response.status_code, response.content, sorted(response.headers.multi_items())


def test_unknown_user_and_wrong_password_answer_alike(make_mock: MockFactory) -> None:
    mock = make_mock(account_lock_num=3)
    unknown = mock.make_client(auth=("nobody", WRONG_PASSWORD)).get(SETTINGS_PATH)
    wrong = mock.make_client(auth=("alice", WRONG_PASSWORD)).get(SETTINGS_PATH)
    assert envelope_problems(unknown, 401) == []
    assert unknown.headers["www-authenticate"] == 'Basic realm="Analytics"'
    assert comparable(unknown) == comparable(wrong)
    for _ in range(3):
        mock.make_client(auth=("alice", WRONG_PASSWORD)).get(SETTINGS_PATH)
    locked = mock.make_client(auth=("alice", ALICE_PASSWORD)).get(SETTINGS_PATH)
    assert comparable(locked) == comparable(unknown)


@pytest.mark.parametrize("lock_after", [0, 10])
def test_unknown_user_costs_as_much_as_a_wrong_password(tmp_path: Path, lock_after: int) -> None:
    users_file = tmp_path / "users.json"
    users_file.write_text(
        json.dumps(
            {"users": [{"name": "alice", "password": ALICE_PASSWORD, "permissions": ["Admin"]}]}
        )
    )
    settings = isolated_settings(
        database_url=f"sqlite:///{tmp_path / 'timing.db'}",
        secret_key="timing-secret",
        users_file=users_file,
        account_lock_num=lock_after,
    )
    with AnalyticsMock(settings) as mock:
        clients = {
            "unknown user": mock.make_client(auth=("nobody", WRONG_PASSWORD)),
            "wrong password": mock.make_client(auth=("alice", WRONG_PASSWORD)),
        }
        times: dict[str, list[float]] = {name: [] for name in clients}
        for client in clients.values():  # warm-up: imports, connections, caches
            client.get(SETTINGS_PATH)
        for _ in range(30):  # interleaved, so that load on the machine hits both alike
            for name, client in clients.items():
                started = time.perf_counter()
                response = client.get(SETTINGS_PATH)
                times[name].append(time.perf_counter() - started)
                assert response.status_code == 401
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["unknown user"] / medians["wrong password"]
    assert 0.5 <= ratio <= 2.0, medians


# Timing, statistically: interleaved samples, the median of their paired differences bounded
# by a fraction of what the difference would be if the property did not hold, measured in the
# same run (the cost of one password verification, of one commit), so that a slower or busier
# machine moves the bound with the samples. Figures in docs/reliability.md.


def stored_hash(mock: AnalyticsMock, name: str) -> str:
    runtime = mock.app.state.runtime
    with runtime.db.session() as session:
        row = UserRepository(session).get(name)
        assert row is not None
        return row.password_hash


def refused(client: httpx.Client) -> None:
    assert client.get(SETTINGS_PATH).status_code == 401


def test_a_locked_account_takes_as_long_for_the_right_password_as_for_a_wrong_one(
    make_mock: MockFactory,
) -> None:
    mock = make_mock(account_lock_num=2)
    right = mock.make_client(auth=("alice", ALICE_PASSWORD))
    wrong = mock.make_client(auth=("alice", WRONG_PASSWORD))
    # Signed in before the lock: the server has verified (and may remember) this password.
    assert right.get(SETTINGS_PATH).status_code == 200
    refused(wrong)
    refused(wrong)
    password_hash = stored_hash(mock, "alice")

    def alike(timings: Timings) -> bool:
        # Answering the right password from memory would save one whole verification.
        return abs(timings.difference("right", "wrong")) < 0.5 * timings.median("verification")

    samples = {
        "right": lambda: refused(right),
        "wrong": lambda: refused(wrong),
        "verification": lambda: verify_password(ALICE_PASSWORD, password_hash, memo=False),
    }
    timings = interleaved(samples, rounds=60, holds=alike)
    assert alike(timings), timings


def test_the_lock_bookkeeping_takes_as_long_for_an_unknown_account(
    make_mock: MockFactory,
) -> None:
    mock = make_mock(account_lock_num=10)
    known = mock.make_client(auth=("alice", WRONG_PASSWORD))
    unknown = mock.make_client(auth=("nobody", WRONG_PASSWORD))
    runtime = mock.app.state.runtime

    def commit() -> None:  # a changed row's commit, as counting a failure is
        with runtime.db.session(write=True) as session:
            ControlRepository(session).count_unknown_failure()

    def alike(timings: Timings) -> bool:
        # Counting a known account's failure costs a write and its commit (an fsync): an
        # unknown name that skipped it would answer faster by about one commit.
        return abs(timings.difference("known", "unknown")) < 0.5 * timings.median("commit")

    refused(known)
    refused(unknown)
    samples = {
        "known": lambda: refused(known),
        "unknown": lambda: refused(unknown),
        "commit": commit,
        "unlock": lambda: mock.unlock("alice"),  # alice's count never reaches the lock
    }
    timings = interleaved(samples, rounds=100, holds=alike)
    assert alike(timings), timings


# --- malformed Authorization headers ---------------------------------------------------------

VALID = basic(b"system:manager")
MALFORMED: dict[str, list[bytes]] = {
    "empty": [b""],
    "blank": [b"   "],
    "scheme only": [b"Basic"],
    "scheme and space": [b"Basic "],
    "HSSO without token": [b"HSSO "],
    "no scheme": [b64(b"system:manager")],
    "empty scheme": [b" " + b64(b"system:manager") + b" x"],
    "unknown scheme": [b"Bearer " + b64(b"system:manager")],
    "tab after scheme": [b"Basic\t" + b64(b"system:manager")],
    "tab inside credentials": [VALID[:10] + b"\t" + VALID[10:]],
    "missing padding": [VALID.rstrip(b"=")],
    "not base64": [b"Basic !!!!"],
    "trailing garbage": [VALID + b" extra"],
    "no colon": [basic(b"system")],
    "non-ASCII bytes": [b"Basic \xff\xfe\xfd\xfc"],
    "non-ASCII scheme": [b"B\xe4sic " + b64(b"system:manager")],
    "non-UTF-8 user": [basic(b"syst\xe9m:manager")],
    "NUL in user": [basic(b"sys\x00tem:manager")],
    "NUL in password": [basic(b"system:man\x00ager")],
    "non-ASCII token": [b"HSSO \xe9\xe9\xe9"],
    # Large but within the 16 KiB head limit (past it, the HTTP layer's 400 comes first).
    "huge base64": [b"Basic " + b"A" * 15_000],
    "huge password": [basic(b"system:" + b"x" * 11_000)],
    "huge token": [b"HSSO " + b"x" * 15_000],
    "two headers, bad first": [b"Basic !!!!", VALID],
    "two headers, valid first": [VALID, b"Basic !!!!"],
}


def malformed_params() -> Iterator[object]:
    for backend_param in BACKEND_PARAMS:
        backend = str(backend_param.values[0])
        for name, values in MALFORMED.items():
            yield pytest.param(backend, values, marks=backend_param.marks, id=f"{backend}-{name}")


@pytest.mark.parametrize(("backend", "values"), list(malformed_params()))
def test_malformed_authorization_is_a_401_envelope(
    make_database_url: Callable[[str], str], backend: str, values: list[bytes]
) -> None:
    settings = isolated_settings(
        database_url=make_database_url(backend), secret_key="malformed-secret"
    )
    with AnalyticsMock(settings) as mock:
        client = mock.make_client(auth=None)
        headers = [(b"Authorization", value) for value in values]
        try:
            response = client.get(SETTINGS_PATH, headers=headers)
        except Exception as exc:  # escaped the app: a 500 over a real server
            pytest.fail(f"the app raised {type(exc).__name__}: {exc}")
    assert envelope_problems(response, 401) == [], response.text[:300]
    assert response.json()["messageID"] == "KNAQ20101-E"
    assert response.headers.get_list("www-authenticate") == ['Basic realm="Analytics"']


# --- oversized requests against a real server ------------------------------------------------


@pytest.fixture
def live(start_server: StartServer, tmp_path: Path) -> ServerProcess:
    return start_server(f"sqlite:///{tmp_path / 'live.db'}").wait_ready()


def exchange(server: ServerProcess, request: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, then read until the server closes or the answer is complete."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        # Refused before everything was sent: whatever it answered is still readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_answer(sock, timeout)


def read_answer(sock: socket.socket, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        received += chunk
        if complete(received):
            break
    return received


def complete(received: bytes) -> bool:
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> dict[str, object]:
    document = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert isinstance(document, dict)
    return document


def assert_still_serving(server: ServerProcess) -> None:
    assert server.process.poll() is None, server.output()
    with server.client() as http:
        assert http.get(SETTINGS_PATH, headers=ADMIN).status_code == 200


def request_head(method: str, path: str, *extra: bytes) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Authorization: " + VALID,
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


OVERSIZED_HEADS = {
    "one huge header": request_head("GET", SETTINGS_PATH, b"X-Pad: " + b"a" * 100_000),
    "many headers": request_head(
        "GET", SETTINGS_PATH, *(f"X-Pad-{i}: {'b' * 40}".encode() for i in range(2000))
    ),
    "huge query": request_head("GET", SETTINGS_PATH + "?$query=" + "c" * 100_000),
    "huge path": b"GET /" + b"d" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


@pytest.mark.live
@pytest.mark.parametrize("head", OVERSIZED_HEADS.values(), ids=OVERSIZED_HEADS.keys())
def test_oversized_request_head_is_refused_while_it_arrives(
    live: ServerProcess, head: bytes
) -> None:
    # 32 KiB of a head that has not ended: past the 16 KiB limit, the server must refuse by
    # itself rather than buffer it and wait for the rest.
    answer = exchange(live, head[: 32 * 1024], timeout=5.0)
    assert status_of(answer) == 400, answer[:300]
    body = assert_vendor_envelope(answer, "KNAQ20007-E")
    assert body["message"] == (
        "KNAQ20007-E The request line and headers are larger than 16384 bytes."
    )
    assert_still_serving(live)
    assert "Traceback" not in live.output()


@pytest.mark.live
@pytest.mark.parametrize("head", OVERSIZED_HEADS.values(), ids=OVERSIZED_HEADS.keys())
def test_oversized_request_head_never_gets_a_5xx(live: ServerProcess, head: bytes) -> None:
    # Sent at once, the whole head may reach the parser in one read and be parsed (then refused
    # by the app) or in several (refused by the HTTP layer); the same answer either way.
    answer = exchange(live, head)
    assert status_of(answer) == 400, answer[:300]
    assert_vendor_envelope(answer, "KNAQ20007-E")
    assert_still_serving(live)
    assert "Traceback" not in live.output()


@pytest.mark.live
def test_pipelined_requests_with_large_bodies_are_not_taken_for_a_large_head(
    live: ServerProcess,
) -> None:
    # Two PUTs with 40 KB bodies and most of a GET in one write: the bytes of the bodies read
    # with the start of the GET's head must not count against that head's limit.
    body = json.dumps({"hostname": "mail.example.com"}).encode() + b" " * 40_000
    put = request_head(
        "PUT",
        OBJECT_PATH,
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(body)).encode(),
    )
    requests = put + body + put + body + request_head("GET", SETTINGS_PATH, b"Connection: close")
    with socket.create_connection(("127.0.0.1", live.port), timeout=10.0) as sock:
        # The GET's head ends in a later read than the bodies before it.
        sock.sendall(requests[:-10])
        time.sleep(0.2)
        sock.sendall(requests[-10:])
        answers = read_until_closed(sock)
    # A body does not end with a line break: the next status line follows it directly.
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers) == [b"200", b"200", b"200"], answers[:500]


@pytest.mark.live
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: ten\r\n\r\n",
    ],
    ids=["no request line", "header without colon", "bad content length"],
)
def test_unparseable_request_is_the_vendor_400(live: ServerProcess, request_bytes: bytes) -> None:
    answer = exchange(live, request_bytes)
    assert status_of(answer) == 400, answer[:300]
    body = assert_vendor_envelope(answer, "KNAQ20006-E")
    assert body["message"] == "KNAQ20006-E The request is not valid HTTP."
    assert body["errorSource"] == ("/" if request_bytes.startswith((b"GET /", b"PUT /")) else "")
    assert_still_serving(live)


@pytest.mark.live
@pytest.mark.parametrize(
    ("coding", "message_id"),
    [
        (b"gzip, chunked", "KNAQ25101-E"),
        (b"x-mine,chunked", "KNAQ25101-E"),
        # Chunked twice is not valid HTTP (RFC 9112): the HTTP layer refuses it first.
        (b"chunked, chunked", "KNAQ20006-E"),
    ],
)
def test_a_body_in_a_transfer_coding_it_cannot_decode_is_refused_and_stores_nothing(
    live: ServerProcess, coding: bytes, message_id: str
) -> None:
    body = b'{"portNumber": 2999}'
    head = request_head(
        "PUT",
        OBJECT_PATH,
        b"Content-Type: application/json",
        b"Transfer-Encoding: " + coding,
        b"Connection: close",
    )
    answer = exchange(live, head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    assert status_of(answer) == (501 if message_id == "KNAQ25101-E" else 400), answer[:300]
    body_seen = assert_vendor_envelope(answer, message_id)
    assert body_seen["errorSource"] == OBJECT_PATH
    with live.client() as http:
        stored = http.get(SETTINGS_PATH, headers=ADMIN).json()["data"][0]
    assert stored["portNumber"] != 2999
    assert_still_serving(live)


@pytest.mark.live
def test_a_request_before_a_malformed_one_gets_its_answer_first(live: ServerProcess) -> None:
    # In one write: a valid PUT and GET, then bytes that are not HTTP. Both are answered (the
    # PUT applied); the garbage then gets its 400, which names no path (it has none).
    body = json.dumps({"hostname": "first.example.com", "portNumber": 2601}).encode()
    put = request_head(
        "PUT",
        OBJECT_PATH,
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(body)).encode(),
    )
    with socket.create_connection(("127.0.0.1", live.port), timeout=10.0) as sock:
        sock.sendall(put + body + request_head("GET", SETTINGS_PATH) + b"XYZ\r\n\r\n")
        answers = read_until_closed(sock)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)
    assert statuses == [b"200", b"200", b"400"], answers[:500]
    assert b'"errorSource":"","message":"KNAQ20006-E' in answers
    with live.client() as http:
        stored = http.get(SETTINGS_PATH, headers=ADMIN).json()["data"][0]
    assert stored["portNumber"] == 2601
    assert journalled(live.url, "PUT")["status"] == 200


@pytest.mark.live
@pytest.mark.parametrize(
    ("framing", "body"),
    [
        (b"Transfer-Encoding: chunked", b"zz\r\nabc\r\n0\r\n\r\n"),
        (b"Transfer-Encoding: gzip", b'{"portNumber": 2602}'),
    ],
    ids=["bad chunk size", "no chunked coding"],
)
def test_a_body_the_http_layer_refuses_is_journalled_with_that_answer(
    live: ServerProcess, framing: bytes, body: bytes
) -> None:
    with live.client() as http:
        assert http.delete("/_mock/requests").status_code == 204
    head = request_head("PUT", OBJECT_PATH, b"Content-Type: application/json", framing)
    answer = exchange(live, head + body)
    assert status_of(answer) == 400, answer[:300]
    assert_vendor_envelope(answer, "KNAQ20006-E")
    assert journalled(live.url, "PUT")["status"] == 400
    assert_still_serving(live)


def assert_vendor_envelope(answer: bytes, *message_ids: str) -> dict[str, object]:
    """The answer is the vendor's envelope with one of `message_ids` and the vendor's headers."""
    head = answer.partition(b"\r\n\r\n")[0].lower()
    for header in (
        b"content-type: application/json",
        b"cache-control: no-cache",
        b"x-frame-options: sameorigin",
        b"x-content-type-options: nosniff",
    ):
        assert header in head, (header, head[:500])
    body = body_of(answer)
    assert set(body) == {"errorSource", "message", "messageID", "application"}, body
    assert body["messageID"] in message_ids, body
    assert body["application"] == "Analytics"
    return body


@pytest.mark.live
@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", OBJECT_PATH), ("POST", INVOKE_PATH), ("PUT", "/_mock/state")],
)
def test_declared_oversized_body_is_413_before_it_is_sent(
    live: ServerProcess, method: str, path: str
) -> None:
    head = request_head(
        method,
        path,
        b"Content-Type: application/json",
        f"Content-Length: {ONE_MIB + 1}".encode(),
    )
    # Nothing of the body is sent: the answer must come from the declared length alone.
    answer = exchange(live, head, timeout=5.0)
    assert status_of(answer) == 413, answer[:300]
    assert body_of(answer)["messageID"] == "KNAQ21301-E"
    assert_still_serving(live)


@pytest.mark.live
@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", OBJECT_PATH), ("POST", INVOKE_PATH), ("PUT", "/_mock/state")],
)
def test_chunked_oversized_body_is_413_before_it_ends(
    live: ServerProcess, method: str, path: str
) -> None:
    head = request_head(
        method, path, b"Content-Type: application/json", b"Transfer-Encoding: chunked"
    )
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * (64 * 1024))
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", live.port), timeout=10.0) as sock:
        sock.sendall(head)
        # Up to 4 MiB, stopping as soon as the server answers.
        while sent < 4 * ONE_MIB:
            readable, _, _ = select.select([sock], [], [], 0.01)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 64 * 1024
        answer = read_answer(sock, 5.0)
    assert sent < 4 * ONE_MIB, "the server read the whole 4 MiB body without answering"
    assert status_of(answer) == 413, answer[:300]
    assert body_of(answer)["messageID"] == "KNAQ21301-E"
    assert_still_serving(live)
