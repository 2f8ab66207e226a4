"""The Alembic migrations: the schema they build, its agreement with the ORM, and how they run.

Database-backed tests run on SQLite and, with ANALYTICS_MOCK_TEST_POSTGRES_URL set, on a fresh
PostgreSQL schema too (the `database_url` fixture of conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from analytics_mock.db.engine import create_database_engine
from analytics_mock.db.migrate import HEAD_REVISION, SCRIPT_LOCATION, is_at_head, upgrade_to_head
from analytics_mock.db.models import Base
from analytics_mock.settings import Settings
from tests.support.servers import clean_env

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK_TIMEOUT_MS = 10_000
TABLES = {"email_settings", "users", "sessions", "alembic_version"}


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def bounded_lock_wait(database_url: str, timeout_ms: int = LOCK_TIMEOUT_MS) -> str:
    """On PostgreSQL, the URL with lock waits bounded, so a deadlock fails instead of hanging."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return database_url
    options = f"{url.query.get('options', '')} -clock_timeout={timeout_ms}".strip()
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    return create_database_engine(Settings(database_url=bounded_lock_wait(url)))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    built = make_engine(database_url)
    yield built
    built.dispose()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff: list[object] = compare_metadata(context, Base.metadata)
        return diff


def test_there_is_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1


def test_head_revision_constant_is_the_newest_script() -> None:
    # The server decides "at head" from the constant alone, without loading the scripts.
    assert head_revision() == HEAD_REVISION


def alembic_upgrade(engine: Engine, revision: str) -> None:
    """Migrate with Alembic alone, as `upgrade_to_head` did before it built empty databases."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def schema_dump(engine: Engine) -> dict[str, object]:
    """Everything the reflection sees of every table, and every row."""
    inspector = inspect(engine)
    dump: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        columns = [{**c, "type": repr(c["type"])} for c in inspector.get_columns(table)]
        indexes = sorted(inspector.get_indexes(table), key=lambda i: str(i["name"]))
        dump[table] = {
            "columns": columns,
            "pk": inspector.get_pk_constraint(table),
            "fks": inspector.get_foreign_keys(table),
            "indexes": indexes,
            "uniques": sorted(inspector.get_unique_constraints(table), key=repr),
            "checks": sorted(inspector.get_check_constraints(table), key=repr),
        }
    with engine.connect() as conn:
        for table in sorted(inspector.get_table_names()):
            rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            dump[f"{table} rows"] = [tuple(row) for row in rows]
        if engine.dialect.name == "sqlite":
            # The DDL text itself, which the reflection above may not fully show.
            master = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name"
            dump["sqlite_master"] = [tuple(row) for row in conn.execute(text(master))]
    return dump


def drop_everything(engine: Engine) -> None:
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(text("DROP TABLE alembic_version"))
    assert table_names(engine) == set()


def test_an_empty_database_is_built_as_the_migrations_build_it(engine: Engine) -> None:
    upgrade_to_head(engine)
    built = schema_dump(engine)
    drop_everything(engine)
    alembic_upgrade(engine, "head")
    migrated = schema_dump(engine)
    assert built == migrated
    assert set(built) >= TABLES
    assert built["control rows"] == [(1, False, 0, 0)]
    assert built["alembic_version rows"] == [(HEAD_REVISION,)]


def test_an_older_schema_is_migrated_keeping_its_rows(engine: Engine) -> None:
    alembic_upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (name, password_hash, permissions, failed_logins, locked) "
                "VALUES ('kept', 'h', 'Admin', 0, false)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO sessions (token_hash, user_name, created_at, last_used_at) "
                "VALUES ('t', 'kept', 1.0, 2.0)"
            )
        )
    with engine.connect() as conn:
        assert not is_at_head(conn)
    upgrade_to_head(engine)
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []
    with engine.connect() as conn:
        assert is_at_head(conn)
        assert conn.execute(text("SELECT name FROM users")).scalars().all() == ["kept"]
        sessions = conn.execute(text("SELECT token_hash, user_name FROM sessions")).all()
        assert [tuple(row) for row in sessions] == [("t", "kept")]
        assert conn.execute(text("SELECT id FROM control")).scalars().all() == [1]


def test_is_at_head_on_a_database_without_version_table(engine: Engine) -> None:
    with engine.connect() as conn:
        assert not is_at_head(conn)
    assert table_names(engine) == set()


def test_tables_without_a_version_table_are_left_to_alembic(engine: Engine) -> None:
    # Not an empty database: creating the schema over it would hide whatever it is.
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE users (name VARCHAR(255) PRIMARY KEY)"))
    with pytest.raises(SQLAlchemyError, match="users"):
        upgrade_to_head(engine)
    assert table_names(engine) == {"users"}


def test_alembic_cli_upgrade_head_from_the_repository(database_url: str, engine: Engine) -> None:
    assert (REPO_ROOT / "alembic.ini").is_file()
    env = clean_env({"ANALYTICS_MOCK_DATABASE_URL": bounded_lock_wait(database_url)})
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert table_names(engine) >= TABLES
    assert current_revision(engine) == head_revision()
    # Nothing but the schema: no seeded rows.
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM users")).scalar_one() == 0


def test_migrations_match_the_models(engine: Engine) -> None:
    upgrade_to_head(engine)
    assert table_names(engine) >= TABLES
    assert schema_differences(engine) == []


def test_comparison_would_see_a_missing_index(engine: Engine) -> None:
    # The agreement check above is not vacuous: a schema that lacks an index is reported.
    upgrade_to_head(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_sessions_last_used_at"))
    differences = schema_differences(engine)
    assert differences
    assert "ix_sessions_last_used_at" in repr(differences)


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade_to_head(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (name, password_hash, permissions, failed_logins, locked) "
                "VALUES ('kept', 'h', 'Admin', 0, false)"
            )
        )
    upgrade_to_head(engine)
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM users")).scalars().all() == ["kept"]
        assert conn.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar_one() == 1


def test_concurrent_upgrades_of_a_fresh_database_both_succeed(
    database_url: str, request: pytest.FixtureRequest
) -> None:
    # Two engines, as two server processes starting at once would have.
    engines = [
        create_database_engine(Settings(database_url=bounded_lock_wait(database_url, 3000)))
        for _ in range(2)
    ]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def upgrade(engine: Engine) -> None:
        try:
            barrier.wait(timeout=10)
            upgrade_to_head(engine)
        except BaseException as exc:
            errors.append(exc)

    # Daemon threads: a hung upgrade must fail this test, never block the interpreter's exit.
    threads = [threading.Thread(target=upgrade, args=(e,), daemon=True) for e in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads), "an upgrade hangs"
        assert errors == []
        assert current_revision(engines[0]) == head_revision()
        assert schema_differences(engines[0]) == []
        with engines[0].connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar_one() == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_concurrent_migrate_commands_of_a_fresh_database_both_succeed(
    database_url: str, engine: Engine
) -> None:
    # Two processes, as two servers starting at once: the case the migration lock is for.
    env = clean_env({"ANALYTICS_MOCK_DATABASE_URL": bounded_lock_wait(database_url)})
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "analytics_mock", "migrate"],
            cwd=REPO_ROOT.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        results = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stdout + stderr
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    upgrade_to_head(engine)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert table_names(engine) & TABLES <= {"alembic_version"}
    assert current_revision(engine) is None

    upgrade_to_head(engine)
    assert table_names(engine) >= TABLES
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []
