"""Prepared statements on the driver's cursor fail as SQLAlchemy's own execution fails."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
from sqlalchemy import Engine, Table, bindparam, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from analytics_mock.db.engine import create_database_engine
from analytics_mock.db.migrate import upgrade_to_head
from analytics_mock.db.models import UserRow
from analytics_mock.db.prepared import Prepared
from analytics_mock.settings import Settings

USERS = cast(Table, UserRow.__table__)
# Every column given: Python-side defaults are SQLAlchemy's execution's, not the driver's.
ADD_USER = Prepared(
    insert(USERS).values(
        name=bindparam("name"),
        password_hash="x",
        permissions="Admin",
        failed_logins=0,
        locked=False,
    )
)
NAMES = Prepared(select(USERS.c.name, USERS.c.locked).order_by(USERS.c.name))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    built = create_database_engine(Settings(database_url=database_url))
    upgrade_to_head(built)
    yield built
    built.dispose()


def test_rows_come_back_by_name_and_index(engine: Engine) -> None:
    with engine.begin() as connection:
        ADD_USER.run_many(connection, [{"name": "p1"}, {"name": "p2"}])
        rows = [row for row in NAMES.rows(connection) if row.name.startswith("p")]
    assert [(row.name, row[0]) for row in rows] == [("p1", "p1"), ("p2", "p2")]


def test_a_refused_statement_raises_sqlalchemys_error_without_its_parameters(
    engine: Engine,
) -> None:
    with engine.begin() as connection:
        ADD_USER.run(connection, {"name": "twice-secret-name"})
        with pytest.raises(IntegrityError) as raised:
            ADD_USER.run(connection, {"name": "twice-secret-name"})
        connection.rollback()
    assert not raised.value.connection_invalidated
    # The driver's own text may quote the key (PostgreSQL's DETAIL); the parameters never show.
    assert "[parameters" not in str(raised.value)


def test_a_lost_connection_is_invalidated_as_sqlalchemy_would(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("an SQLite connection is not lost to a server")
    with engine.connect() as victim:
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as killer:
            killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            killer.commit()
        with pytest.raises(DBAPIError) as raised:
            NAMES.rows(victim)
        assert raised.value.connection_invalidated and victim.invalidated
