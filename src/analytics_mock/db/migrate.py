"""Bring the schema to the newest revision, as the server does at every start."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

SCRIPT_LOCATION = "analytics_mock:migrations"


def upgrade_to_head(engine: Engine) -> None:
    """Run every pending migration in one transaction (serialised across processes)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    with engine.execution_options(sqlite_write=True).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
