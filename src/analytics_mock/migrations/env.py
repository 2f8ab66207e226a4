"""Alembic environment: used by the server at start-up and by `alembic upgrade head`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from analytics_mock.db.engine import create_database_engine
from analytics_mock.db.models import Base
from analytics_mock.settings import get_settings

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_KEY = 7_274_221_015


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        # Several workers may start at once; one migrates while the others wait, then find
        # the schema at head. SQLite gets the same effect from BEGIN IMMEDIATE.
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate over the caller's connection, or over the configured database."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_database_engine(get_settings())
    try:
        with engine.execution_options(sqlite_write=True).begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("analytics-mock migrations run online only: alembic upgrade head")
run_migrations_online()
