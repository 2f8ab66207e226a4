"""Authentication: Basic, HSSO tokens, expiry, the account lock, the users file."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from passlib.hash import sha512_crypt
from sqlalchemy import event, select

from analytics_mock import passwords
from analytics_mock.cli import main
from analytics_mock.db.models import ControlRow, SessionRow
from analytics_mock.db.repositories import SessionRepository, UserRepository
from analytics_mock.db.runner import READ_CONNECTION
from analytics_mock.passwords import _DUMMY_HASH, hash_password
from analytics_mock.runtime import Runtime
from analytics_mock.services.auth import token_digest
from analytics_mock.services.users import UsersFileError, load_users_file
from tests.support.db import trips_to
from tests.support.helpers import ADMIN, SETTINGS_PATH, basic

pytestmark = pytest.mark.anyio


def token_of(response: httpx.Response) -> str:
    scheme, _, token = response.headers["www-authenticate"].partition(" ")
    assert scheme == "HSSO" and token
    return token


def fake_clock(runtime: Runtime, start: float) -> list[float]:
    """The runtime's clock reads `now[0]` of the list returned, which the test moves on."""
    now = [start]
    runtime.clock = lambda: now[0]
    return now


def hsso(token: str) -> dict[str, str]:
    return {"Authorization": f"HSSO {token}"}


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"system:wrong").decode(),
        "Basic " + base64.b64encode(b"nobody:manager").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:manager").decode(),
        "Bearer abc",
        "HSSO",
        "HSSO not-a-token",
        "Digest username=system",
        "x" * 5000,
    ],
)
async def test_bad_credentials_are_401(client: httpx.AsyncClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await client.get(SETTINGS_PATH, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="Analytics"'
    assert response.json()["message"] == "KNAQ20101-E Authentication failed."


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    header = "basic " + ADMIN["Authorization"].split(" ", 1)[1]
    assert (await client.get(SETTINGS_PATH, headers={"Authorization": header})).status_code == 200


async def test_hsso_token_is_issued_and_accepted(client: httpx.AsyncClient) -> None:
    first = await client.get(SETTINGS_PATH, headers=ADMIN)
    token = token_of(first)
    second = await client.get(SETTINGS_PATH, headers=hsso(token))
    assert second.status_code == 200
    assert token_of(second) == token


async def test_basic_clients_do_not_add_a_session_per_request(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    tokens = {token_of(await client.get(SETTINGS_PATH, headers=ADMIN)) for _ in range(20)}
    assert len(tokens) == 1
    with runtime.db.session() as session:
        assert SessionRepository(session).count() == 1


async def test_basic_calls_that_come_together_share_one_session(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # None of them finds a token when it arrives: each would open a session of its own.
    answers = await asyncio.gather(*(client.get(SETTINGS_PATH, headers=ADMIN) for _ in range(64)))
    assert {answer.status_code for answer in answers} == {200}
    tokens = {token_of(answer) for answer in answers}
    assert len(tokens) == 1
    with runtime.db.session() as session:
        assert SessionRepository(session).count() == 1
    later = await client.get(SETTINGS_PATH, headers=hsso(tokens.pop()))
    assert later.status_code == 200


async def test_token_is_stored_only_as_a_digest(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    token = token_of(await client.get(SETTINGS_PATH, headers=ADMIN))
    with runtime.db.session() as session:
        rows = list(session.scalars(select(SessionRow)))
    assert [row.token_hash for row in rows] != [token]
    assert all(token not in row.token_hash for row in rows)


async def test_token_expires_after_idle_timeout(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    now = fake_clock(runtime, 1_000_000.0)
    token = token_of(await client.get(SETTINGS_PATH, headers=ADMIN))
    now[0] += 999.0
    assert (await client.get(SETTINGS_PATH, headers=hsso(token))).status_code == 200
    # Expiry counts from the last use, not from issue.
    now[0] += 999.0
    assert (await client.get(SETTINGS_PATH, headers=hsso(token))).status_code == 200
    now[0] += 1000.5
    expired = await client.get(SETTINGS_PATH, headers=hsso(token))
    assert expired.status_code == 401
    assert expired.json()["message"] == "KNAQ20101-E Authentication failed."


async def test_idle_sessions_are_purged(client: httpx.AsyncClient, runtime: Runtime) -> None:
    now = fake_clock(runtime, 2_000_000.0)
    await client.get(SETTINGS_PATH, headers=ADMIN)
    now[0] += 5000
    # The cached token is dead, so a new session opens, and the idle one goes.
    await client.get(SETTINGS_PATH, headers=ADMIN)
    with runtime.db.session() as session:
        assert SessionRepository(session).count() == 1


async def test_tokens_work_across_processes(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with make_client() as one, make_client() as two:
        token = token_of(await one.get(SETTINGS_PATH, headers=ADMIN))
        assert (await two.get(SETTINGS_PATH, headers=hsso(token))).status_code == 200


def users_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "users.yaml"
    path.write_text(body)
    return path


async def test_users_file_plaintext_and_hash(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    path = users_file(
        tmp_path,
        "users:\n"
        "  - name: alice\n    password: alice-pw\n    permissions: [Admin]\n"
        f"  - name: bob\n    passwordHash: '{hash_password('bob-pw')}'\n"
        "    permissions: [Admin, Modify]\n"
        "  - name: carol\n    password: carol-pw\n    permissions: [StorageOps]\n",
    )
    async with make_client(users_file=path) as client:
        assert (
            await client.get(SETTINGS_PATH, headers=basic("alice", "alice-pw"))
        ).status_code == 200
        assert (await client.get(SETTINGS_PATH, headers=basic("bob", "bob-pw"))).status_code == 200
        assert (
            await client.get(SETTINGS_PATH, headers=basic("carol", "carol-pw"))
        ).status_code == 403
        assert (
            await client.get(SETTINGS_PATH, headers=basic("alice", "bob-pw"))
        ).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200


async def test_plaintext_never_reaches_the_database(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path, database_url: str
) -> None:
    path = users_file(tmp_path, "users:\n  - name: dave\n    password: dave-secret-pw\n")
    async with make_client(users_file=path) as client:
        await client.get(SETTINGS_PATH, headers=basic("dave", "dave-secret-pw"))
    if database_url.startswith("sqlite"):
        db_file = Path(database_url.removeprefix("sqlite:///"))
        for candidate in db_file.parent.glob(db_file.name + "*"):
            assert b"dave-secret-pw" not in candidate.read_bytes()


async def test_changed_password_invalidates_the_cache(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    path = users_file(
        tmp_path, "users:\n  - name: erin\n    password: old-pw\n    permissions: [Admin]\n"
    )
    async with make_client(users_file=path) as first:
        assert (await first.get(SETTINGS_PATH, headers=basic("erin", "old-pw"))).status_code == 200
        # Another process starts with a new password in the file; the first one's cache
        # must not keep accepting the old password.
        path.write_text("users:\n  - name: erin\n    password: new-pw\n    permissions: [Admin]\n")
        async with make_client(users_file=path) as second:
            assert (
                await second.get(SETTINGS_PATH, headers=basic("erin", "new-pw"))
            ).status_code == 200
        assert (await first.get(SETTINGS_PATH, headers=basic("erin", "old-pw"))).status_code == 401
        assert (await first.get(SETTINGS_PATH, headers=basic("erin", "new-pw"))).status_code == 200


async def test_lock_after_n_failures_and_not_before(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path, database_url: str
) -> None:
    path = users_file(
        tmp_path, "users:\n  - name: frank\n    password: frank-pw\n    permissions: [Admin]\n"
    )
    good, bad = basic("frank", "frank-pw"), basic("frank", "nope")
    async with make_client(users_file=path, account_lock_num=3) as client:
        token = token_of(await client.get(SETTINGS_PATH, headers=good))
        assert (await client.get(SETTINGS_PATH, headers=bad)).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=bad)).status_code == 401
        # A success in between resets the count of consecutive failures.
        assert (await client.get(SETTINGS_PATH, headers=good)).status_code == 200
        for _ in range(2):
            assert (await client.get(SETTINGS_PATH, headers=bad)).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=good)).status_code == 200
        for _ in range(3):
            assert (await client.get(SETTINGS_PATH, headers=bad)).status_code == 401
        locked = await client.get(SETTINGS_PATH, headers=good)
        assert locked.status_code == 401
        assert locked.json()["message"] == "KNAQ20101-E Authentication failed."
        assert (await client.get(SETTINGS_PATH, headers=hsso(token))).status_code == 401

        assert main(["users", "unlock", "frank", "--database-url", database_url]) == 0
        assert (await client.get(SETTINGS_PATH, headers=good)).status_code == 200


async def test_system_is_exempt_unless_configured(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    wrong = basic("system", "wrong")
    async with make_client(account_lock_num=1) as client:
        for _ in range(3):
            assert (await client.get(SETTINGS_PATH, headers=wrong)).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
    async with make_client(account_lock_num=1, lock_system_account=True) as client:
        assert (await client.get(SETTINGS_PATH, headers=wrong)).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 401


async def test_no_lock_when_lock_num_is_zero(client: httpx.AsyncClient) -> None:
    for _ in range(12):
        await client.get(SETTINGS_PATH, headers=basic("system", "wrong"))
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("users: [{name: x}]", "give exactly one of password and passwordHash"),
        ("users: [{name: x, password: p, permissions: [Root]}]", "permissions"),
        ("users: [{name: x, passwordHash: notahash}]", "passwordHash"),
        ("users: [{name: x, password: p}, {name: x, password: q}]", "duplicate"),
        ("users: [{name: 'a:b', password: p}]", "name"),
        ("{unclosed", "not valid JSON or YAML"),
        ("users: [{name: x, password: p, extra: 1}]", "extra"),
    ],
)
def test_bad_users_file_is_one_clear_line(tmp_path: Path, body: str, fragment: str) -> None:
    path = users_file(tmp_path, body)
    with pytest.raises(UsersFileError) as caught:
        load_users_file(path)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "password: p" not in str(caught.value)


def test_unknown_names_cost_a_verification_at_todays_rounds() -> None:
    # The hash an unknown name is verified against is a constant: it must have the scheme and
    # rounds of the hashes made now, or unknown names would answer faster than wrong passwords.
    assert _DUMMY_HASH.split("$")[1:3] == hash_password("x").split("$")[1:3]


async def test_a_password_changed_in_the_users_file_ends_the_accounts_sessions(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    entry = "users:\n  - name: {name}\n    password: {password}\n    permissions: [Admin]\n"
    path = users_file(tmp_path, entry.format(name="dan", password="old-pw-1"))
    async with make_client(users_file=path) as client:
        token = token_of(await client.get(SETTINGS_PATH, headers=basic("dan", "old-pw-1")))
        system_token = token_of(await client.get(SETTINGS_PATH, headers=ADMIN))
    path.write_text(entry.format(name="dan", password="new-pw-2"))
    async with make_client(users_file=path) as client:  # a restart with the changed file
        assert (await client.get(SETTINGS_PATH, headers=hsso(token))).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=hsso(system_token))).status_code == 200
        ok = await client.get(SETTINGS_PATH, headers=basic("dan", "new-pw-2"))
        assert ok.status_code == 200


class DatabaseWork:
    """What the server's calls do to the database and to the password hashes, call by call."""

    def __init__(self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        engine = transport.app.state.runtime.db.engine  # type: ignore[attr-defined]
        self.writes = 0
        self.commits = 0
        self.verifications = 0
        verify = passwords._CONTEXT.verify

        def counted_verify(secret: str, hashed: str) -> bool:
            self.verifications += 1
            return bool(verify(secret, hashed))

        def statement(*args: Any) -> None:
            if args[2].lstrip().split(" ", 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
                self.writes += 1

        def commit(connection: Any) -> None:
            if not connection.info.get(READ_CONNECTION):  # PostgreSQL's readers commit too
                self.commits += 1

        monkeypatch.setattr(passwords._CONTEXT, "verify", counted_verify)
        event.listen(engine, "before_cursor_execute", statement)
        event.listen(engine, "commit", commit)

    async def of(self, call: Any) -> tuple[httpx.Response, tuple[int, int, int]]:
        """The response of `call` and the (writes, commits, verifications) it cost."""
        before = (self.writes, self.commits, self.verifications)
        response = await call
        after = (self.writes, self.commits, self.verifications)
        return response, (after[0] - before[0], after[1] - before[1], after[2] - before[2])


async def test_a_locked_account_answers_right_and_wrong_passwords_alike(
    make_client: Callable[..., httpx.AsyncClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = users_file(
        tmp_path, "users:\n  - name: gina\n    password: gina-pw\n    permissions: [Admin]\n"
    )
    good, bad = basic("gina", "gina-pw"), basic("gina", "nope")
    async with make_client(users_file=path, account_lock_num=2) as client:
        work = DatabaseWork(client, monkeypatch)
        assert (await client.get(SETTINGS_PATH, headers=good)).status_code == 200  # cached now
        for _ in range(2):
            assert (await client.get(SETTINGS_PATH, headers=bad)).status_code == 401
        right, right_cost = await work.of(client.get(SETTINGS_PATH, headers=good))
        wrong, wrong_cost = await work.of(client.get(SETTINGS_PATH, headers=bad))
        assert (right.status_code, right.content) == (wrong.status_code, wrong.content)
        assert right_cost == wrong_cost  # a full verification each, the same writes
        assert right_cost[2] == 1


async def test_a_failure_writes_as_much_for_an_unknown_account_as_for_a_known_one(
    make_client: Callable[..., httpx.AsyncClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = users_file(
        tmp_path, "users:\n  - name: hank\n    password: hank-pw\n    permissions: [Admin]\n"
    )
    async with make_client(users_file=path, account_lock_num=10) as client:
        work = DatabaseWork(client, monkeypatch)
        for _ in range(3):  # interleaved: each pair under the same conditions
            known, known_cost = await work.of(
                client.get(SETTINGS_PATH, headers=basic("hank", "nope"))
            )
            unknown, unknown_cost = await work.of(
                client.get(SETTINGS_PATH, headers=basic("nobody", "nope"))
            )
            assert (known.status_code, known.content) == (unknown.status_code, unknown.content)
            assert known_cost == unknown_cost, (known_cost, unknown_cost)


async def test_password_verifications_run_within_their_limit(
    make_client: Callable[..., httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    running = threading.Condition()
    active, peak = [0], [0]
    gate = threading.Event()

    def held_verify(_secret: str, _hashed: str) -> bool:
        with running:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            running.notify_all()
        gate.wait(timeout=10)
        with running:
            active[0] -= 1
        return False

    def waited_for(condition: Callable[[], bool], timeout: float) -> bool:
        with running:
            return running.wait_for(condition, timeout=timeout)

    async with make_client(password_verifications=2) as client:
        # Verified before the flood: its calls need no verification and no worker thread.
        assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
        monkeypatch.setattr(passwords._CONTEXT, "verify", held_verify)
        flood = [
            asyncio.ensure_future(client.get(SETTINGS_PATH, headers=basic("nobody", f"pw-{n}")))
            for n in range(6)
        ]
        try:
            assert await asyncio.to_thread(waited_for, lambda: active[0] == 2, 10)
            # Left free, the other four would be in by now; the limit keeps them out.
            assert not await asyncio.to_thread(waited_for, lambda: active[0] > 2, 1.0)
            assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
        finally:
            gate.set()
        assert [r.status_code for r in await asyncio.gather(*flood)] == [401] * 6
    assert peak[0] == 2


async def test_an_operator_hash_is_upgraded_at_the_first_login_and_kept_while_the_file_is(
    make_client: Callable[..., httpx.AsyncClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = "users:\n  - name: op\n    passwordHash: '{hash}'\n    permissions: [Admin]\n"
    path = users_file(tmp_path, entry.format(hash=sha512_crypt.using(rounds=5000).hash("pw-1")))
    verified: list[str | None] = []  # the scheme of each hash a password was verified against
    verify = passwords._CONTEXT.verify

    def spied(secret: str, hashed: str) -> bool:
        verified.append(passwords._CONTEXT.identify(hashed))
        return bool(verify(secret, hashed))

    monkeypatch.setattr(passwords._CONTEXT, "verify", spied)

    def stored(client: httpx.AsyncClient) -> str:
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        runtime: Runtime = transport.app.state.runtime  # type: ignore[attr-defined]
        with runtime.db.session() as session:
            row = UserRepository(session).get("op")
            assert row is not None
            return row.password_hash

    def restart() -> None:
        # A new process remembers no verification.
        monkeypatch.setattr(passwords, "_verified", OrderedDict())

    async with make_client(users_file=path) as client:
        token = token_of(await client.get(SETTINGS_PATH, headers=basic("op", "pw-1")))
        assert verified == ["sha512_crypt"]
        upgraded = stored(client)
        assert passwords._CONTEXT.identify(upgraded) == "pbkdf2_sha256"
    restart()
    async with make_client(users_file=path) as client:  # the same file: the upgrade stays
        verified.clear()  # the start verified `system`'s password
        assert stored(client) == upgraded
        assert (await client.get(SETTINGS_PATH, headers=hsso(token))).status_code == 200
        assert (await client.get(SETTINGS_PATH, headers=basic("op", "pw-1"))).status_code == 200
        assert verified == ["pbkdf2_sha256"]
    restart()
    path.write_text(entry.format(hash=sha512_crypt.using(rounds=5000).hash("pw-2")))
    async with make_client(users_file=path) as client:  # a new password in the file wins
        verified.clear()
        assert (await client.get(SETTINGS_PATH, headers=hsso(token))).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=basic("op", "pw-1"))).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=basic("op", "pw-2"))).status_code == 200
        assert verified == ["sha512_crypt", "sha512_crypt"]
        assert passwords._CONTEXT.identify(stored(client)) == "pbkdf2_sha256"


async def test_a_locked_account_is_not_upgraded(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    operator_hash = sha512_crypt.using(rounds=5000).hash("pw-1")
    path = users_file(tmp_path, f"users:\n  - name: op\n    passwordHash: '{operator_hash}'\n")
    async with make_client(users_file=path, account_lock_num=1) as client:
        assert (await client.get(SETTINGS_PATH, headers=basic("op", "wrong"))).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=basic("op", "pw-1"))).status_code == 401
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        runtime: Runtime = transport.app.state.runtime  # type: ignore[attr-defined]
        with runtime.db.session() as session:
            row = UserRepository(session).get("op")
            assert row is not None and row.password_hash == operator_hash


async def test_an_unknown_accounts_failure_changes_a_row_as_a_known_ones_does(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    # SQLite writes nothing, and so skips the commit's fsync, for a row rewritten unchanged:
    # the unknown name's write must change one, as counting a known account's failure does.
    path = users_file(tmp_path, "users:\n  - name: ivy\n    password: ivy-pw\n")
    async with make_client(users_file=path, account_lock_num=10) as client:
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        runtime: Runtime = transport.app.state.runtime  # type: ignore[attr-defined]

        def counted() -> tuple[int, int]:
            with runtime.db.session() as session:
                control = session.get(ControlRow, 1)
                ivy = UserRepository(session).get("ivy")
                assert control is not None and ivy is not None
                return control.unknown_failures, ivy.failed_logins

        before = counted()
        assert (await client.get(SETTINGS_PATH, headers=basic("ivy", "nope"))).status_code == 401
        assert (await client.get(SETTINGS_PATH, headers=basic("nobody", "x"))).status_code == 401
        assert counted() == (before[0] + 1, before[1] + 1)


async def test_a_call_reads_the_controls_and_its_account_in_one_trip(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = trips_to(runtime.db, monkeypatch)
    body = {"portNumber": 2525}
    assert (
        await client.put(SETTINGS_PATH + "/mailServerSetting%230", json=body, headers=ADMIN)
    ).status_code == 200
    trips.clear()  # the first call opened the account's session
    body = {"portNumber": 2526}
    assert (
        await client.put(SETTINGS_PATH + "/mailServerSetting%230", json=body, headers=ADMIN)
    ).status_code == 200
    assert trips == ["read", "write"]  # the controls with the account, then the update
    trips.clear()
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
    # The controls with the account, then the list (on PostgreSQL the entry is a write after).
    assert trips[:2] == ["read", "read"] and "read" not in trips[2:]
    trips.clear()
    assert (await client.get(SETTINGS_PATH, headers=basic("system", "wrong"))).status_code == 401
    assert trips[0] == "read" and "read" not in trips[1:]  # a failure is written, not re-read


async def test_calls_that_read_a_stale_session_together_mark_it_used_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    now = fake_clock(runtime, 3_000_000.0)
    token = token_of(await client.get(SETTINGS_PATH, headers=ADMIN))
    touches: list[str] = []

    def statement(*args: Any) -> None:
        if args[2].lstrip().upper().startswith("UPDATE SESSIONS"):
            touches.append(args[2])

    event.listen(runtime.db.engine, "before_cursor_execute", statement)
    now[0] += 5.0
    for headers in (ADMIN, hsso(token)):
        calls = [client.get(SETTINGS_PATH, headers=headers) for _ in range(20)]
        assert {r.status_code for r in await asyncio.gather(*calls)} == {200}
        assert len(touches) == 1  # every call read the session's old mark; one writes anew
        touches.clear()
        now[0] += 5.0
    with runtime.db.session() as session:
        row = SessionRepository(session).get(token_digest(token))
        assert row is not None
        assert row.last_used_at == now[0] - 5.0
