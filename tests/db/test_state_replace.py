"""Whole-state replacements (reset, import) from several processes at once: no unique violation,
and an object that exists before and after is found by a call that waited for its row lock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import cast

import pytest
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from analytics_mock.db.engine import Database, create_database_engine, orm
from analytics_mock.db.migrate import upgrade_to_head
from analytics_mock.db.models import EmailSettingRow
from analytics_mock.db.repositories import EmailSettingsRepository
from analytics_mock.settings import Settings

pytestmark = pytest.mark.anyio


def setting(instance_id: str, hostname: str) -> EmailSettingRow:
    return EmailSettingRow(
        instance_id=instance_id,
        hostname=hostname,
        port_number=25,
        secure_connection="NONE",
        authentication_enabled=False,
        user_id=None,
        password_encrypted=None,
        sender_address="a@example.com",
    )


def objects(hostname: str) -> list[EmailSettingRow]:
    return [setting("mailServerSetting#0", hostname), setting("mailServerSetting#1", hostname)]


@pytest.fixture
def processes(database_url: str) -> Iterator[list[Database]]:
    """Three databases over one store, as three server processes have."""
    settings = Settings(database_url=database_url)
    dbs = [Database(create_database_engine(settings)) for _ in range(3)]
    upgrade_to_head(dbs[0].engine)
    try:
        yield dbs
    finally:
        for db in dbs:
            db.dispose()


def lock_waits(db: Database) -> int:
    """PostgreSQL backends waiting for a lock on this test's statements."""
    with db.engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND (query LIKE '%email_settings%' OR query LIKE '%pg_advisory%')"
                )
            ).scalar_one()
        )


async def test_replacements_and_a_locked_read_during_one_all_succeed(
    processes: list[Database],
) -> None:
    first, second, third = processes
    await first.write(orm(lambda s: EmailSettingsRepository(s).replace_all(objects("seed"))))
    holding, release = threading.Event(), threading.Event()

    def replace_and_hold(session: Session) -> None:
        EmailSettingsRepository(session).replace_all(objects("first"))
        session.flush()
        holding.set()
        release.wait(timeout=10)

    def found_locked(connection: Connection) -> bool:
        record = EmailSettingsRepository(connection).get("mailServerSetting#0", for_update=True)
        return record is not None

    held = asyncio.ensure_future(first.write(orm(replace_and_hold)))
    assert await asyncio.to_thread(holding.wait, 10)
    replaced = asyncio.ensure_future(
        second.write(orm(lambda s: EmailSettingsRepository(s).replace_all(objects("second"))))
    )
    found = asyncio.ensure_future(third.write(found_locked))
    if first.dialect == "postgresql":  # both wait for the first's transaction before it ends
        deadline = time.monotonic() + 10
        while await asyncio.to_thread(lock_waits, first) < 2:
            assert time.monotonic() < deadline, "the other processes never waited"
    release.set()
    await held
    # A list at run time, whatever the count; typeshed calls two futures' outcomes a tuple.
    outcomes = cast(list[object], await asyncio.gather(replaced, found, return_exceptions=True))
    assert outcomes == [None, True]  # no unique violation; no 404 for an object that stayed
    with first.session() as session:
        rows = session.execute(
            select(EmailSettingRow.instance_id, EmailSettingRow.hostname).order_by(
                EmailSettingRow.pk
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        ("mailServerSetting#0", "second"),
        ("mailServerSetting#1", "second"),
    ]


async def test_a_replacement_keeps_the_order_it_is_given(processes: list[Database]) -> None:
    db = processes[0]
    given = [setting("b", "h"), setting("a", "h"), setting("c", "h")]
    await db.write(orm(lambda s: EmailSettingsRepository(s).replace_all(objects("seed"))))
    await db.write(orm(lambda s: EmailSettingsRepository(s).replace_all(given[:2])))
    reordered = [setting("c", "h"), setting("a", "h"), setting("b", "h")]
    await db.write(orm(lambda s: EmailSettingsRepository(s).replace_all(reordered)))
    with db.session() as session:
        ids = list(
            session.scalars(select(EmailSettingRow.instance_id).order_by(EmailSettingRow.pk))
        )
    assert ids == ["c", "a", "b"]
