"""Rows a batch's transaction holds: read under a lock once, written once, as if run in turn."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Connection, text

from analytics_mock.crypto import SecretBox
from analytics_mock.db import repositories
from analytics_mock.db.engine import Database
from analytics_mock.db.repositories import EmailSettingsRepository
from analytics_mock.errors import InvalidMember
from analytics_mock.schemas.email_settings import EmailSettingUpdate
from analytics_mock.services.email_settings import (
    DEFAULT_INSTANCE_ID,
    ensure_default_setting,
    update_setting,
)
from tests.db.support import runner_threads_held

pytestmark = pytest.mark.anyio
BOX = SecretBox(b"held-rows-test")


@pytest.fixture
def setting(db: Database) -> Iterator[Database]:
    with db.session(write=True) as session:
        ensure_default_setting(session)
    yield db


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times the locked read and the write of a settings row ran."""
    counts: Counter[str] = Counter()
    for name, method in (("_GET_SETTING_FOR_UPDATE", "rows"), ("_SAVE_SETTING", "run")):
        prepared = getattr(repositories, name)
        original = getattr(prepared, method)

        def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            counts[_name] += 1
            return _original(*args)

        monkeypatch.setattr(prepared, method, counted)
    return counts


def put(**members: Any) -> Any:
    patch = EmailSettingUpdate.model_validate(members)
    return partial(update_setting, box=BOX, instance_id=DEFAULT_INSTANCE_ID, patch=patch)


def stored(db: Database) -> dict[str, Any]:
    with db.session() as session:
        record = EmailSettingsRepository(session).get(DEFAULT_INSTANCE_ID)
    assert record is not None
    return {"hostname": record.hostname, "portNumber": record.port_number}


def fails_after_writing(connection: Connection) -> None:
    """Writes the row in the service's way, then refuses: none of it may remain."""
    repo = EmailSettingsRepository(connection)
    record = repo.get(DEFAULT_INSTANCE_ID, for_update=True)
    assert record is not None
    repo.save(dataclasses.replace(record, hostname="never.example.com"))
    raise InvalidMember("refused after writing")


def one(answer: dict[str, Any]) -> tuple[Any, Any]:
    return answer["hostname"], answer["portNumber"]


async def test_calls_of_one_batch_read_and_write_their_row_once(
    setting: Database, statements: Counter[str]
) -> None:
    async with runner_threads_held(setting):
        calls = [asyncio.ensure_future(setting.run(put(portNumber=port))) for port in (1, 2, 3)]
        calls.append(asyncio.ensure_future(setting.run(put(hostname="last.example.com"))))
    answers = await asyncio.gather(*calls)
    # Each answers what it would have alone, in its turn.
    assert [one(a) for a in answers] == [
        ("localhost", 1),
        ("localhost", 2),
        ("localhost", 3),
        ("last.example.com", 3),
    ]
    assert stored(setting) == {"hostname": "last.example.com", "portNumber": 3}
    assert statements == {"_GET_SETTING_FOR_UPDATE": 1, "_SAVE_SETTING": 1}


async def test_a_unit_that_fails_after_writing_leaves_no_trace(setting: Database) -> None:
    async with runner_threads_held(setting):
        calls = [
            asyncio.ensure_future(setting.run(put(portNumber=1))),
            asyncio.ensure_future(setting.run(fails_after_writing)),
            asyncio.ensure_future(setting.run(put(portNumber=2))),
        ]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(answers[1], InvalidMember)
    assert one(answers[0]) == ("localhost", 1) and one(answers[2]) == ("localhost", 2)
    assert stored(setting) == {"hostname": "localhost", "portNumber": 2}


async def test_a_failed_savepoint_unit_keeps_the_writes_before_it(setting: Database) -> None:
    # A unit in a savepoint writes the batch's held rows inside it; when it fails, the rollback
    # takes those writes too, and they must still be written before the commit.
    async with runner_threads_held(setting):
        calls = [
            asyncio.ensure_future(setting.run(put(portNumber=7))),
            asyncio.ensure_future(setting.run(fails_after_writing, savepoint=True)),
        ]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert one(answers[0]) == ("localhost", 7) and isinstance(answers[1], InvalidMember)
    assert stored(setting) == {"hostname": "localhost", "portNumber": 7}


async def test_a_batch_that_runs_again_keeps_every_call_once(setting: Database) -> None:
    # On PostgreSQL the failed statement aborts the batch, which runs again item by item.
    def broken(connection: Connection) -> None:
        connection.execute(text("SELECT * FROM no_such_table"))

    async with runner_threads_held(setting):
        calls = [
            asyncio.ensure_future(setting.run(put(portNumber=11))),
            asyncio.ensure_future(setting.run(broken)),
            asyncio.ensure_future(setting.run(put(hostname="after.example.com"))),
        ]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    assert "no_such_table" in str(answers[1])
    assert one(answers[0]) == ("localhost", 11)
    assert one(answers[2]) == ("after.example.com", 11)
    assert stored(setting) == {"hostname": "after.example.com", "portNumber": 11}


async def test_writes_outside_the_runner_go_straight_to_the_database(setting: Database) -> None:
    with setting.session(write=True) as session:
        update_setting(session, BOX, DEFAULT_INSTANCE_ID, EmailSettingUpdate(portNumber=2526))
    assert stored(setting)["portNumber"] == 2526
