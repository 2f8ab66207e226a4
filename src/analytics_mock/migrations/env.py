"""Alembic environment: used by the server at start-up and by `alembic upgrade head`."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from analytics_mock.db.engine import create_database_engine
from analytics_mock.db.migrate import lock_for_migration
from analytics_mock.db.models import Base
from analytics_mock.settings import get_settings


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        # Several processes may start at once; one migrates while the others wait, then find
        # the schema at head (a no-op when the server already holds the lock).
        lock_for_migration(connection)
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the caller's connection, or over the configured database."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Run from the command line: log as alembic.ini says.
    if context.config.config_file_name is not None:
        fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    engine = create_database_engine(get_settings())
    try:
        with engine.execution_options(write=True).begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("analytics-mock migrations run online only: alembic upgrade head")
run_migrations_online()
