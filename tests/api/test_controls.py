"""The test controls under /_mock/: reset, state, journal, faults, maintenance, records."""

from __future__ import annotations

import asyncio
import base64
import gc
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from analytics_mock import passwords
from analytics_mock.api.controls_middleware import ConnectionDroppedError
from analytics_mock.app import create_app
from analytics_mock.runtime import Runtime
from analytics_mock.services.seed import SeedFileError, load_seed_file
from analytics_mock.settings import Settings
from tests.support.db import trips_to
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH, asgi_call, basic

pytestmark = pytest.mark.anyio

INVOKE = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail/invoke"
SMTP_PASSWORD = "smtp-Secret-42"


async def put_port(client: httpx.AsyncClient, port: int) -> httpx.Response:
    return await client.put(OBJECT_PATH, json={"portNumber": port}, headers=ADMIN)


async def journal(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/_mock/requests", params=params)
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


async def add_fault(client: httpx.AsyncClient, **rule: Any) -> dict[str, Any]:
    response = await client.post("/_mock/faults", json=rule)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_reset_returns_everything_to_the_seed(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with make_client(account_lock_num=1, test_mail_mode="capture") as client:
        await client.put(
            OBJECT_PATH,
            json={"hostname": "changed.example.com", "updatePassword": True, "password": "eA=="},
            headers=ADMIN,
        )
        await client.post(
            INVOKE,
            json={"parameters": [{"destinationAddresses": ["a@example.com"]}]},
            headers=ADMIN,
        )
        await add_fault(client, path="/nothing", status=500)
        await client.put("/_mock/maintenance", json={"enabled": True})
        assert (await client.post("/_mock/reset")).json() == {"reset": True}
        listed = await client.get(SETTINGS_PATH, headers=ADMIN)
        assert listed.status_code == 200
        assert listed.json()["data"][0]["hostname"] == "localhost"
        assert (await client.get("/_mock/faults")).json() == {"faults": []}
        assert (await client.get("/_mock/test-mails")).json() == {"testMails": []}
        assert (await client.get("/_mock/maintenance")).json() == {"enabled": False}
        # Only the GET after the reset is in the journal.
        assert [e["method"] for e in await journal(client)] == ["GET"]
        state = (await client.get("/_mock/state")).json()
        assert state["settings"][0]["passwordEncrypted"] is None


async def test_reset_ends_sessions_and_unlocks(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: [{name: amy, password: amy-pw, permissions: [Admin]}]")
    async with make_client(users_file=users, account_lock_num=1) as client:
        token = (await client.get(SETTINGS_PATH, headers=ADMIN)).headers["www-authenticate"]
        await client.get(SETTINGS_PATH, headers=basic("amy", "bad"))
        assert (await client.get(SETTINGS_PATH, headers=basic("amy", "amy-pw"))).status_code == 401
        await client.post("/_mock/reset")
        assert (await client.get(SETTINGS_PATH, headers=basic("amy", "amy-pw"))).status_code == 200
        old = {"Authorization": token}
        assert (await client.get(SETTINGS_PATH, headers=old)).status_code == 401


async def test_state_export_hides_passwords_and_imports_back(client: httpx.AsyncClient) -> None:
    encoded = base64.b64encode(SMTP_PASSWORD.encode()).decode()
    await client.put(
        OBJECT_PATH,
        json={"updatePassword": True, "password": encoded, "userId": "u1", "portNumber": 2525},
        headers=ADMIN,
    )
    exported = await client.get("/_mock/state")
    assert exported.status_code == 200
    assert SMTP_PASSWORD not in exported.text and encoded not in exported.text
    assert "manager" not in exported.text
    state = exported.json()
    assert state["settings"][0]["passwordEncrypted"]
    assert {u["name"] for u in state["users"]} == {"system"}
    await client.post("/_mock/reset")
    imported = await client.put("/_mock/state", json=state)
    assert imported.status_code == 200
    assert imported.json() == state
    listed = (await client.get(SETTINGS_PATH, headers=ADMIN)).json()["data"]
    assert listed[0]["portNumber"] == 2525 and listed[0]["userId"] == "u1"


async def test_state_import_with_plain_seed_values(client: httpx.AsyncClient) -> None:
    state = {
        "settings": [
            {"instanceID": "mailServerSetting#0", "hostname": "a.example.com"},
            {
                "instanceID": "mailServerSetting#1",
                "authenticationEnabled": True,
                "userId": "x",
                "password": "eHl6",
            },
        ],
        "users": [{"name": "bo", "password": "bo-pw", "permissions": ["Admin"], "locked": True}],
        "maintenance": False,
        "faults": [{"path": "/Analytics/v1/objects/*", "method": "PUT", "status": 503}],
    }
    response = await client.put("/_mock/state", json=state)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [s["instanceID"] for s in body["settings"]] == [
        "mailServerSetting#0",
        "mailServerSetting#1",
    ]
    assert "bo-pw" not in response.text
    assert (await client.get(SETTINGS_PATH, headers=basic("bo", "bo-pw"))).status_code == 401
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
    assert (await put_port(client, 26)).status_code == 503


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"settings": []},
        {"settings": [{"instanceID": "a"}, {"instanceID": "a"}]},
        {"settings": [{"instanceID": "a", "portNumber": 0}]},
        {"settings": [{"instanceID": "a", "authenticationEnabled": True}]},
        {"settings": [{"instanceID": "a", "passwordEncrypted": "not-a-token"}]},
        {"settings": [{"instanceID": "a"}], "users": [{"name": "x"}]},
        {"settings": [{"instanceID": "a"}], "faults": [{"path": "/x"}]},
        {"settings": [{"instanceID": "a"}], "bogus": 1},
    ],
)
async def test_bad_state_is_400_and_changes_nothing(
    client: httpx.AsyncClient, state: dict[str, Any]
) -> None:
    before = (await client.get("/_mock/state")).json()
    response = await client.put("/_mock/state", json=state)
    assert response.status_code == 400, response.text
    assert response.json()["application"] == "Analytics"
    assert (await client.get("/_mock/state")).json() == before


@pytest.mark.parametrize(
    "user",
    [
        {"name": "x", "passwordHash": "$pbkdf2-sha256$29000$not-a-real-hash-Secret-9f3e"},
        {"name": "x", "password": "p-Secret-9f3e", "passwordHash": "h-Secret-9f3e"},
    ],
)
async def test_a_refused_state_user_echoes_no_part_of_its_password(
    client: httpx.AsyncClient, user: dict[str, str]
) -> None:
    state = {"settings": [{"instanceID": "a"}], "users": [user]}
    response = await client.put("/_mock/state", json=state)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert 'user "x"' in message
    assert "Secret" not in response.text and "9f3e" not in response.text


@pytest.mark.parametrize("raw", [b'{"x": "\\ud800"}', b'["\\udfff", {"a": 1}]'])
async def test_a_body_with_a_lone_surrogate_escape_does_not_break_the_journal(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    # Valid JSON whose string no UTF-8 answer can hold; sent without credentials (a 401).
    sent = await client.put(OBJECT_PATH, content=raw, headers={"Content-Type": "application/json"})
    assert sent.status_code == 401
    paired = b'{"hostname": "\\ud83d\\ude00.example.com"}'  # an escaped emoji parses as one
    await client.put(
        OBJECT_PATH, content=paired, headers={**ADMIN, "Content-Type": "application/json"}
    )
    response = await client.get("/_mock/requests")
    assert response.status_code == 200, response.text
    lone, emoji = sorted(response.json()["requests"], key=lambda entry: entry["id"])[-2:]
    assert lone["json"] is None and "\\ud" in lone["body"]
    assert emoji["json"] == {"hostname": "\U0001f600.example.com"}


async def test_journal_records_calls_with_secrets_redacted(client: httpx.AsyncClient) -> None:
    encoded = base64.b64encode(SMTP_PASSWORD.encode()).decode()
    await client.put(
        OBJECT_PATH + "?x=1",
        json={"updatePassword": True, "password": encoded, "portNumber": 2526},
        headers=ADMIN,
    )
    await client.put(
        OBJECT_PATH,
        content=b'{"password": "' + encoded.encode() + b'", broken',
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    await client.get(SETTINGS_PATH, headers=basic("system", "wrong-pw-7"))
    entries = await journal(client)
    assert [(e["method"], e["status"]) for e in entries] == [
        ("GET", 401),
        ("PUT", 400),
        ("PUT", 200),
    ]
    put = entries[2]
    assert put["path"] == "/Analytics/v1/objects/EmailServerSettings/mailServerSetting#0"
    assert put["query"] == "x=1"
    assert put["headers"]["authorization"] == "Basic ***"
    assert put["headers"]["content-type"] == "application/json"
    assert '"portNumber": 2526' in put["body"] and '"password": "***"' in put["body"]
    assert put["durationMs"] >= 0
    assert put["time"].endswith("+00:00")
    text = str(entries)
    for secret in (SMTP_PASSWORD, encoded, ADMIN["Authorization"].split()[1], "wrong-pw-7"):
        assert secret not in text
    assert '"password": "***"' in entries[1]["body"]


async def test_each_call_is_journalled_once_with_the_status_it_answered(
    client: httpx.AsyncClient,
) -> None:
    # The last unit of a call writes the entry in its own transaction (a follow-up); calls
    # refused before it, or by it, are journalled once all the same.
    missing = SETTINGS_PATH + "/mailServerSetting%2399"
    answers = [
        (await client.put(missing, json={"portNumber": 25}, headers=ADMIN)).status_code,
        (await client.get(SETTINGS_PATH, params={"page": "0"}, headers=ADMIN)).status_code,
        (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code,
        (await client.put(OBJECT_PATH, json={"portNumber": 26}, headers=ADMIN)).status_code,
    ]
    entries = await journal(client)
    assert answers == [404, 400, 200, 200]
    assert [e["status"] for e in reversed(entries)] == answers
    assert [e["method"] for e in reversed(entries)] == ["PUT", "GET", "GET", "PUT"]


async def test_concurrent_list_calls_share_a_read_and_each_is_journalled(
    client: httpx.AsyncClient,
) -> None:
    # Calls of the same query that arrive together share one read; each keeps its own entry.
    queries = [""] * 8 + ["page=1&pageSize=1"] * 4 + ["page=0"] * 2
    answers = await asyncio.gather(
        *(client.get(f"{SETTINGS_PATH}?{query}".rstrip("?"), headers=ADMIN) for query in queries)
    )
    assert [a.status_code for a in answers] == [200] * 12 + [400] * 2
    assert all("pagination" in a.json() for a in answers[:12])
    assert {a.json()["pagination"]["pageSize"] for a in answers[:12]} == {100, 1}
    entries = await journal(client)
    assert sorted((e["query"], e["status"]) for e in entries) == sorted(
        (query, 400 if query == "page=0" else 200) for query in queries
    )


async def test_calls_leave_no_reference_cycles_behind(settings: Settings, runtime: Runtime) -> None:
    # The server raises the collector's threshold on the strength of this: a call's objects are
    # freed by reference counting, so collection has almost nothing to find.
    app = create_app(settings, runtime=runtime)
    body = b'{"portNumber": 2525, "updatePassword": false}'
    # Not an error raised inside a unit of database work (a 404): its traceback holds the
    # runner's frames, which hold it. The collector frees those.
    calls = [
        ("GET", SETTINGS_PATH, b"", b""),
        ("GET", SETTINGS_PATH, b"page=0", b""),  # 400
        ("PUT", OBJECT_PATH, b"", body),
        ("PUT", OBJECT_PATH, b"", b'{"portNumber": 0}'),  # 400
        ("DELETE", OBJECT_PATH, b"", b""),  # 405, the framework's way
    ]

    async def call(method: str, path: str, query: bytes, content: bytes) -> int:
        headers = [(b"authorization", ADMIN["Authorization"].encode())]
        headers += [(b"content-type", b"application/json")] if content else []
        sent = await asgi_call(app, method, path, headers, query=query, body=content)
        return int(sent[0]["status"])

    for _ in range(3):  # first calls fill caches, which may hold cycles of their own
        assert [await call(*c) for c in calls] == [200, 400, 200, 400, 405]
    gc.collect()
    gc.disable()
    try:
        for _ in range(5):
            await asyncio.gather(*(call(*c) for c in calls))
        assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("number", ["1e400", "-1e400"])
async def test_a_number_past_a_floats_range_keeps_the_journal_readable(
    client: httpx.AsyncClient, number: str
) -> None:
    # Parsed, it is infinity, which JSON cannot write: the journal shows the text it came as.
    body = f'{{"x": {number}}}'
    headers = {"Content-Type": "application/json"}
    assert (await client.post(INVOKE, content=body, headers=headers)).status_code == 401
    journal = await client.get("/_mock/requests")
    assert journal.status_code == 200, journal.text
    [entry] = journal.json()["requests"]
    assert entry["body"] == body and entry["json"] is None


@pytest.mark.parametrize("since", ["nan", "inf", "-inf"])
async def test_a_since_that_is_not_a_number_is_refused(
    client: httpx.AsyncClient, since: str
) -> None:
    answer = await client.get("/_mock/requests", params={"since": since})
    assert answer.status_code == 400, answer.text
    assert answer.json()["application"] == "Analytics"


async def test_journal_filters_limit_and_clear(client: httpx.AsyncClient) -> None:
    await put_port(client, 30)
    await put_port(client, 0)
    await client.get(SETTINGS_PATH, headers=ADMIN)
    assert [e["status"] for e in await journal(client, method="put")] == [400, 200]
    assert len(await journal(client, status=400)) == 1
    assert len(await journal(client, path=SETTINGS_PATH)) == 1
    assert len(await journal(client, limit=1)) == 1
    newest = (await journal(client))[0]
    assert await journal(client, since=9e12) == []
    assert newest["method"] == "GET"
    # Control calls are not journalled.
    assert all(not e["path"].startswith("/_mock") for e in await journal(client))
    assert (await client.delete("/_mock/requests")).status_code == 204
    assert await journal(client) == []


async def test_journal_is_bounded(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with make_client(journal_size=3) as client:
        for port in range(40, 46):
            await put_port(client, port)
        entries = await journal(client)
    assert [e["body"] for e in entries] == [f'{{"portNumber": {p}}}' for p in (45, 44, 43)]


async def test_journal_can_be_off(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with make_client(journal_size=0) as client:
        await put_port(client, 47)
        assert await journal(client) == []


async def test_counted_status_fault(client: httpx.AsyncClient) -> None:
    rule = await add_fault(
        client, method="PUT", path="/Analytics/v1/objects/*", status=500, times=2, message="boom"
    )
    assert rule["remaining"] == 2
    first = await put_port(client, 50)
    assert first.status_code == 500
    assert first.json() == {
        "errorSource": "/Analytics/v1/objects/EmailServerSettings/mailServerSetting%230",
        "message": "KNAQ25001-E boom",
        "messageID": "KNAQ25001-E",
        "application": "Analytics",
    }
    assert first.headers["x-frame-options"] == "SAMEORIGIN"
    # Other methods are not matched.
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
    assert (await put_port(client, 51)).status_code == 500
    assert (await put_port(client, 52)).status_code == 200
    assert (await client.get("/_mock/faults")).json() == {"faults": []}
    statuses = [e["status"] for e in await journal(client, method="PUT")]
    assert statuses == [200, 500, 500]


async def test_fault_until_removed(client: httpx.AsyncClient) -> None:
    rule = await add_fault(client, path=SETTINGS_PATH, status=503)
    for _ in range(3):
        assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 503
    assert (await client.delete(f"/_mock/faults/{rule['id']}")).status_code == 204
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
    missing = await client.delete(f"/_mock/faults/{rule['id']}")
    assert missing.status_code == 404
    await add_fault(client, path="*", status=400)
    assert (await client.delete("/_mock/faults")).status_code == 204
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200


async def test_delay_fault_then_normal_answer(client: httpx.AsyncClient) -> None:
    await add_fault(client, path=SETTINGS_PATH, delayMs=150, times=1)
    response = await client.get(SETTINGS_PATH, headers=ADMIN)
    assert response.status_code == 200
    [entry] = await journal(client)
    assert entry["durationMs"] >= 150


async def test_a_call_held_by_a_delay_reads_its_account_again_after_it(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = trips_to(runtime.db, monkeypatch)
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
    undelayed = trips.count("read")  # the controls with the account, then the list
    await add_fault(client, path=SETTINGS_PATH, delayMs=50, times=1)
    trips.clear()
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
    # What the call read of its account before the delay is old by its end: read once more.
    assert trips.count("read") == undelayed + 1


async def test_drop_fault_in_process_raises(client: httpx.AsyncClient) -> None:
    await add_fault(client, path=SETTINGS_PATH, drop=True, times=1)
    with pytest.raises(ConnectionDroppedError):
        await client.get(SETTINGS_PATH, headers=ADMIN)
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200


@pytest.mark.parametrize(
    "rule",
    [
        {"path": "/x"},
        {"path": "/x", "status": 200},
        {"path": "/x", "status": 500, "drop": True},
        {"path": "", "status": 500},
        {"path": "/x", "status": 500, "times": 0},
        {"path": "/x", "method": "FETCH", "status": 500},
        {"status": 500},
        {"path": "/x", "status": 500, "extra": 1},
    ],
)
async def test_bad_fault_is_400(client: httpx.AsyncClient, rule: dict[str, Any]) -> None:
    response = await client.post("/_mock/faults", json=rule)
    assert response.status_code == 400
    assert (await client.get("/_mock/faults")).json() == {"faults": []}


async def test_a_huge_unknown_member_name_is_shortened_in_the_400(
    client: httpx.AsyncClient,
) -> None:
    name = "n" * 500_000
    response = await client.post("/_mock/faults", json={"path": "/x", "status": 500, name: 1})
    assert response.status_code == 400
    message = response.json()["message"]
    assert "n" * 100 + "..." in message and len(message) < 300


async def test_control_body_needs_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/_mock/faults", content=b"path=/x")
    assert response.status_code == 415
    response = await client.post(
        "/_mock/faults", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.json()["messageID"] == "generic error"


async def test_maintenance_switch(client: httpx.AsyncClient) -> None:
    assert (await client.put("/_mock/maintenance", json={"enabled": True})).json() == {
        "enabled": True
    }
    response = await client.get(SETTINGS_PATH, headers=ADMIN)
    assert response.status_code == 412
    assert response.json()["messageID"] == "KNAQ21201-E"
    assert (await client.get("/healthz")).status_code == 200
    assert [e["status"] for e in await journal(client)] == [412]
    await client.put("/_mock/maintenance", json={"enabled": False})
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
    assert (await client.put("/_mock/maintenance", json={"enabled": "maybe"})).status_code == 400


async def test_test_mail_record(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with make_client(test_mail_mode="capture") as client:
        job = await client.post(
            INVOKE,
            json={"parameters": [{"destinationAddresses": ["a@example.com", "b@example.com"]}]},
            headers=ADMIN,
        )
        [record] = (await client.get("/_mock/test-mails")).json()["testMails"]
        assert record["jobId"] == job.json()["instanceID"]
        assert record["destinationAddresses"] == ["a@example.com", "b@example.com"]
        assert record["mode"] == "capture" and record["state"] == "success"
        assert "Subject:" in record["content"]
        assert (await client.delete("/_mock/test-mails")).status_code == 204
        assert (await client.get("/_mock/test-mails")).json() == {"testMails": []}


async def test_the_test_mail_record_keeps_the_newest(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with make_client(test_mail_mode="capture", test_mail_record_size=2) as client:
        jobs = []
        for address in ["a@example.com", "b@example.com", "c@example.com"]:
            body = {"parameters": [{"destinationAddresses": [address]}]}
            job = await client.post(INVOKE, json=body, headers=ADMIN)
            jobs.append(job.json()["instanceID"])
        records = (await client.get("/_mock/test-mails")).json()["testMails"]
        assert [record["jobId"] for record in records] == [jobs[2], jobs[1]]


async def test_unlock_endpoint(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: [{name: cy, password: cy-pw, permissions: [Admin]}]")
    async with make_client(users_file=users, account_lock_num=1) as client:
        await client.get(SETTINGS_PATH, headers=basic("cy", "nope"))
        assert (await client.get(SETTINGS_PATH, headers=basic("cy", "cy-pw"))).status_code == 401
        assert (await client.post("/_mock/users/cy/unlock")).json() == {
            "name": "cy",
            "locked": False,
        }
        assert (await client.get(SETTINGS_PATH, headers=basic("cy", "cy-pw"))).status_code == 200
        assert (await client.post("/_mock/users/nobody/unlock")).status_code == 404


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_control_token(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with make_client(control_token="ctl-token-1") as client:
        denied = await client.get("/_mock/faults")
        assert denied.status_code == 401
        assert (
            await client.get("/_mock/faults", headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        allowed = await client.get("/_mock/faults", headers={"Authorization": "Bearer ctl-token-1"})
        assert allowed.status_code == 200
        # The emulated API and the probes do not need it.
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200


async def test_control_api_can_be_off(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with make_client(control_api=False) as client:
        assert (await client.post("/_mock/reset")).status_code == 404
        assert "/_mock/reset" not in (await client.get("/openapi.json")).text
        assert (await client.get("/_mock/openapi.json")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200


async def test_the_controls_have_their_own_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/_mock/openapi.json")).json()
    assert document["paths"]["/_mock/reset"]["post"]["tags"] == ["Test controls (emulator only)"]
    assert "FaultIn" in document["components"]["schemas"]
    emulated = (await client.get("/openapi.json")).json()
    assert not [path for path in emulated["paths"] if not path.startswith("/Analytics/v1/")]
    assert "FaultIn" not in emulated["components"]["schemas"]


async def test_two_processes_share_faults_and_journal(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with make_client() as one, make_client() as two:
        await put_port(one, 60)
        await put_port(two, 61)
        assert [e["body"] for e in await journal(one)] == [
            '{"portNumber": 61}',
            '{"portNumber": 60}',
        ]
        await add_fault(one, path="/Analytics/*", status=500, times=1)
        assert (await put_port(two, 62)).status_code == 500
        # The rule was used up in the second process; the first sees it gone.
        assert (await put_port(one, 63)).status_code == 200
        await one.put("/_mock/maintenance", json={"enabled": True})
        assert (await put_port(two, 64)).status_code == 412


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "seed.yaml"
    path.write_text(text)
    return path


async def test_seed_file_and_reset_to_it(
    make_client: Callable[..., httpx.AsyncClient], tmp_path: Path
) -> None:
    seed = write(
        tmp_path,
        """
settings:
  - instanceID: "mailServerSetting#0"
    hostname: smtp.example.com
    portNumber: 587
    secureConnection: STARTTLS
    authenticationEnabled: true
    userId: mailer
    password: c2VjcmV0
  - instanceID: "mailServerSetting#1"
users:
  - name: ann
    password: ann-pw
    permissions: [Admin]
""",
    )
    async with make_client(seed_file=seed) as client:
        listed = (await client.get(SETTINGS_PATH, headers=basic("ann", "ann-pw"))).json()
        assert [s["instanceID"] for s in listed["data"]] == [
            "mailServerSetting#0",
            "mailServerSetting#1",
        ]
        assert listed["data"][0]["portNumber"] == 587
        await put_port(client, 99)
        await client.post("/_mock/reset")
        again = (await client.get(SETTINGS_PATH, headers=ADMIN)).json()
        assert again["data"] == listed["data"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("settings: [{hostname: x}]", "instanceID"),
        ("settings: [{instanceID: a, portNumber: 70000}]", "portNumber"),
        ("settings: [{instanceID: a, password: '!!'}]", "password must be Base64"),
        ("users: [{name: a}]", "users.0"),
        ("bogus: 1", "bogus"),
        ("[unclosed", "not valid JSON or YAML"),
    ],
)
def test_bad_seed_file_is_one_clear_line(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(SeedFileError) as caught:
        load_seed_file(write(tmp_path, text))
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_fault_rules_and_imported_users_are_bounded(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with make_client(max_fault_rules=2, max_state_users=2) as client:
        await add_fault(client, path="/a", status=500)
        await add_fault(client, path="/b", status=500)
        refused = await client.post("/_mock/faults", json={"path": "/c", "status": 500})
        assert refused.status_code == 400
        assert refused.json()["messageID"] == "KNAQ20001-E"
        assert "at most 2 fault rules" in refused.json()["message"]
        assert len((await client.get("/_mock/faults")).json()["faults"]) == 2
        before = (await client.get("/_mock/state")).json()
        fault = {"path": "/x", "status": 500}
        user = {"password": "pw-123456", "permissions": ["Admin"]}
        too_many = [
            {"faults": [fault, fault, fault]},
            {"users": [{"name": f"u{n}", **user} for n in range(3)]},
        ]
        for state in too_many:
            response = await client.put("/_mock/state", json=state)
            assert response.status_code == 400 and response.json()["application"] == "Analytics"
        assert (await client.get("/_mock/state")).json() == before


async def test_a_state_import_hashes_plaintext_passwords_off_the_database_thread(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the database's writing thread, hashing holds the write lock and every call behind it.
    hashed_on: list[str] = []
    hash_once = passwords._CONTEXT.hash

    def recording(secret: str) -> str:
        hashed_on.append(threading.current_thread().name)
        return str(hash_once(secret))

    monkeypatch.setattr(passwords._CONTEXT, "hash", recording)
    state = (await client.get("/_mock/state")).json()
    # Passwords of their own: the process remembers the hashes it made (passwords.py).
    fresh = uuid.uuid4().hex
    state["users"] = [
        {"name": f"u{n}", "password": f"password-{n}-{fresh}", "permissions": ["Admin"]}
        for n in range(3)
    ]
    response = await client.put("/_mock/state", json=state)
    assert response.status_code == 200, response.text
    assert len(hashed_on) == 3
    assert not [name for name in hashed_on if name.startswith("analytics-mock-db")]
    login = basic("u1", f"password-1-{fresh}")
    assert (await client.get(SETTINGS_PATH, headers=login)).status_code == 200
