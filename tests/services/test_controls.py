"""The reset: it empties every table of the models but the reseeded ones, a new table included,
and rewrites the reseeded ones only when they changed. On SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Column, Integer, Table, event, func, insert, select, text, update

from analytics_mock.db.models import Base, UserRow
from analytics_mock.runtime import Runtime
from analytics_mock.services.controls import RESEEDED_TABLES
from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH

pytestmark = pytest.mark.anyio

TEST_MAIL = "/Analytics/v1/services/EmailServerSettings/actions/sendTestMail"


def counts(runtime: Runtime) -> dict[str, int]:
    with runtime.db.session() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


async def dirty_everything(client: httpx.AsyncClient) -> None:
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
    assert (await client.put(OBJECT_PATH, headers=ADMIN, json={"portNumber": 2525})).is_success
    action = (await client.get(TEST_MAIL, headers=ADMIN)).json()
    action["parameters"][0]["destinationAddresses"] = ["ops@example.com"]
    assert (await client.post(TEST_MAIL + "/invoke", headers=ADMIN, json=action)).is_success
    fault = {"path": "/elsewhere", "status": 500}
    assert (await client.post("/_mock/faults", json=fault)).status_code == 201
    failure = {"failureKind": "timeout", "times": 3}
    assert (await client.post("/_mock/test-mail-failures", json=failure)).status_code == 201


async def test_reset_empties_every_table_but_the_reseeded_ones(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    assert set(Base.metadata.tables) >= RESEEDED_TABLES
    before = counts(runtime)
    await dirty_everything(client)
    dirty = counts(runtime)
    emptied = [name for name in dirty if name not in RESEEDED_TABLES]
    # Every other table of the models holds rows now: this test covers them all.
    assert [name for name in emptied if dirty[name] == 0] == []

    runtime.reset()

    assert counts(runtime) == before
    answer = await client.get(SETTINGS_PATH, headers=ADMIN)
    assert answer.json()["data"][0]["portNumber"] == 25


def test_reset_empties_a_table_it_was_never_told_about(runtime: Runtime) -> None:
    extra = Table("extra_records", Base.metadata, Column("id", Integer, primary_key=True))
    try:
        with runtime.db.engine.begin() as connection:
            extra.create(connection)
            connection.execute(insert(extra), [{"id": 1}, {"id": 2}])
        runtime.reset()
        with runtime.db.session() as session:
            assert session.scalar(select(func.count()).select_from(extra)) == 0
    finally:
        Base.metadata.remove(extra)
        with runtime.db.engine.begin() as connection:
            connection.execute(text("DROP TABLE extra_records"))


def rewrites(runtime: Runtime) -> list[str]:
    """The statements that will write a reseeded table, recorded as they run."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        words = statement.split()
        if words[0] in ("INSERT", "UPDATE", "DELETE") and any(
            name in statement for name in ("email_settings", "users")
        ):
            seen.append(" ".join(words[:3]))

    event.listen(runtime.db.engine, "before_cursor_execute", record)
    return seen


async def test_reset_rewrites_the_reseeded_tables_only_when_they_changed(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    runtime.reset()
    seen = rewrites(runtime)
    runtime.reset()
    assert seen == []

    assert (await client.put(OBJECT_PATH, headers=ADMIN, json={"portNumber": 2525})).is_success
    seen.clear()
    runtime.reset()
    assert "DELETE FROM email_settings" in seen
    answer = await client.get(SETTINGS_PATH, headers=ADMIN)
    assert answer.json()["data"][0]["portNumber"] == 25

    # A change the process never saw (another process, say) is found all the same.
    with runtime.db.session(write=True) as session:
        session.execute(update(UserRow).values(locked=True, failed_logins=3))
    runtime.reset()
    with runtime.db.session() as session:
        assert session.execute(select(UserRow.locked, UserRow.failed_logins)).all() == [(False, 0)]


@pytest.mark.parametrize("maintenance", [True, False])
async def test_reset_after_a_fault_is_seen_by_the_cache(
    client: httpx.AsyncClient, runtime: Runtime, maintenance: bool
) -> None:
    runtime.reset()
    fault = {"path": SETTINGS_PATH, "status": 503}
    assert (await client.post("/_mock/faults", json=fault)).status_code == 201
    if maintenance:
        assert (await client.put("/_mock/maintenance", json={"enabled": True})).is_success
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code in (503, 412)
    runtime.reset()
    # The cached rules and switch went with the reset, whichever path it took.
    assert (await client.get(SETTINGS_PATH, headers=ADMIN)).status_code == 200
