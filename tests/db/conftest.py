"""A Database on each backend, migrated, for the tests of the database layer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from analytics_mock.db.engine import Database, create_database_engine
from analytics_mock.db.migrate import upgrade_to_head
from analytics_mock.settings import Settings


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    engine = create_database_engine(Settings(database_url=database_url))
    upgrade_to_head(engine)
    database = Database(engine)
    try:
        yield database
    finally:
        database.dispose()
