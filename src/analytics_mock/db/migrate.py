"""Bring the schema to the newest revision, as the server does at every start."""

from __future__ import annotations

import threading
from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

SCRIPT_LOCATION = "analytics_mock:migrations"
# Any constant works; it only has to be the same in every process that migrates.
MIGRATION_LOCK_KEY = 7_274_221_015
# Alembic keeps its migration context in module globals: one migration per process at a time.
_PROCESS_LOCK = threading.Lock()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


@cache
def head_revision() -> str | None:
    """The newest revision the package ships."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def is_at_head(connection: Connection) -> bool:
    """Whether the database's schema is at the newest revision."""
    return MigrationContext.configure(connection).get_current_revision() == head_revision()


def lock_for_migration(connection: Connection) -> None:
    """Serialise migrations across processes for this transaction.

    SQLite needs nothing more: the caller's transaction began with BEGIN IMMEDIATE.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def upgrade_to_head(engine: Engine) -> None:
    """Run every pending migration in one transaction (serialised across threads and processes)."""
    config = _config()
    with _PROCESS_LOCK, engine.execution_options(sqlite_write=True).begin() as connection:
        # Taken before Alembic reads the current revision, so a second process waits here and
        # then finds the schema at head.
        lock_for_migration(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
