"""Bring the schema to the newest revision, as the server does at every start.

Alembic is imported only when an existing schema needs a migration: a database at head, and an
empty one, are handled with plain SQLAlchemy, so a server start usually never loads it.
"""

from __future__ import annotations

import threading

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    insert,
    select,
    text,
)

from analytics_mock.db.extras import require_extra
from analytics_mock.db.models import Base, ControlRow

SCRIPT_LOCATION = "analytics_mock:migrations"
# The newest revision in migrations/versions; tests/test_migrations.py checks it against Alembic.
HEAD_REVISION = "0005"
# Any constant works; it only has to be the same in every process that migrates.
MIGRATION_LOCK_KEY = 7_274_221_015
# Alembic keeps its migration context in module globals: one migration per process at a time.
_PROCESS_LOCK = threading.Lock()
# Alembic's own version table (alembic.ddl.impl.DefaultImpl.version_table_impl), so that a
# database created here is indistinguishable from one Alembic created.
_VERSION_TABLE = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def current_revisions(connection: Connection) -> list[str] | None:
    """The revisions recorded in the database; None when it has no version table."""
    if not connection.dialect.has_table(connection, _VERSION_TABLE.name):
        return None
    return list(connection.execute(select(_VERSION_TABLE.c.version_num)).scalars())


def is_at_head(connection: Connection) -> bool:
    """Whether the database's schema is at the newest revision."""
    return current_revisions(connection) == [HEAD_REVISION]


def lock_for_migration(connection: Connection) -> None:
    """Serialise migrations across processes for this transaction.

    SQLite needs nothing more: the caller's transaction began with BEGIN IMMEDIATE.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def upgrade_to_head(engine: Engine) -> None:
    """Run every pending migration in one transaction (serialised across threads and processes)."""
    with _PROCESS_LOCK:
        # Read outside the migration lock: most starts find the schema at head, and it stays so.
        with engine.connect() as connection:
            if is_at_head(connection):
                return
        with engine.execution_options(write=True).begin() as connection:
            # Taken before the revision is read again, so a second process waits here and
            # then finds the schema at head.
            lock_for_migration(connection)
            revisions = current_revisions(connection)
            if revisions == [HEAD_REVISION]:
                return
            if revisions is None and not _has_any_table_of(connection, Base.metadata):
                _create_at_head(connection)
                return
            _upgrade_with_alembic(connection)


def _has_any_table_of(connection: Connection, metadata: MetaData) -> bool:
    return any(connection.dialect.has_table(connection, name) for name in metadata.tables)


def _create_at_head(connection: Connection) -> None:
    """Build an empty database at head from the models, as the migrations would have.

    tests/test_migrations.py checks that the result equals what the migrations build.
    """
    Base.metadata.create_all(connection, checkfirst=False)
    # The row migration 0003 inserts.
    connection.execute(insert(ControlRow), [{"id": 1, "maintenance": False, "generation": 0}])
    _VERSION_TABLE.create(connection)
    connection.execute(insert(_VERSION_TABLE), [{"version_num": HEAD_REVISION}])


def _upgrade_with_alembic(connection: Connection) -> None:
    require_extra("alembic", "migrate", "Alembic (needed to migrate an older schema)")
    # Imported here: Alembic and the scripts it loads cost a server start ~0.1 s and ~10 MB.
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
