"""Lean installs: a path that needs an extra which is not installed stops with the pip command.

"Not installed" is simulated: `sys.modules[name] = None` makes every import of it fail, as it
fails where the distribution is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics_mock.app import create_app
from analytics_mock.db.engine import create_database_engine
from analytics_mock.db.extras import MissingExtraError
from analytics_mock.settings import Settings
from tests.support.helpers import sqlite_at_revision

# Nothing listens on port 1 of the loopback; the check must stop the start before connecting.
POSTGRES_URL = "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"
POSTGRES_HINT = "pip install 'analytics-mock[postgres]'"
MIGRATE_HINT = "pip install 'analytics-mock[migrate]'"

# Runs the command in a fresh interpreter where the modules named in argv[1] cannot be imported.
WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from analytics_mock.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run_without(modules: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_MOCK_")}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, modules, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    return errors[0]


def test_engine_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingExtraError) as error:
        create_database_engine(Settings(database_url=POSTGRES_URL))
    assert str(error.value) == f"PostgreSQL support (psycopg) is not installed: {POSTGRES_HINT}"


def test_create_app_without_psycopg_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    settings = Settings(database_url=POSTGRES_URL, secret_key_file=tmp_path / "k")
    with pytest.raises(MissingExtraError, match=r"analytics-mock\[postgres\]"):
        create_app(settings).state.runtime.close()


def test_sqlite_needs_no_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("psycopg", "alembic", "mako"):
        monkeypatch.setitem(sys.modules, name, None)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}")
    create_database_engine(settings).dispose()


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_cli_without_psycopg_is_one_line_with_the_pip_command(command: str, tmp_path: Path) -> None:
    result = run_without("psycopg", command, "--database-url", POSTGRES_URL, cwd=tmp_path)
    assert one_error_line(result).endswith(POSTGRES_HINT)


def test_migrate_without_alembic_builds_a_fresh_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = run_without("alembic,mako", "migrate", "--database-url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_an_older_schema_without_alembic_is_one_line_with_the_pip_command(
    tmp_path: Path,
) -> None:
    url = sqlite_at_revision(tmp_path / "old.db", "0001")
    for args in (["migrate"], ["serve", "--port", "0"]):
        result = run_without("alembic,mako", *args, "--database-url", url, cwd=tmp_path)
        assert one_error_line(result).endswith(MIGRATE_HINT)
