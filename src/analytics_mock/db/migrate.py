"""Bring the schema to the newest revision, as the server does at every start."""

from __future__ import annotations

from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

SCRIPT_LOCATION = "analytics_mock:migrations"


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


def upgrade_to_head(engine: Engine) -> None:
    """Run every pending migration in one transaction (serialised across processes)."""
    config = _config()
    with engine.execution_options(sqlite_write=True).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
