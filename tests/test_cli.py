"""The `analytics-mock` command, run for real as a subprocess from a scratch directory.

Every refusal must be one line on stderr, `analytics-mock: error: ...`, exit status 2, no
traceback, and must never echo a secret it was given (a database password, a users-file password).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from analytics_mock import __version__
from analytics_mock.db.models import UserRow
from analytics_mock.passwords import verify_password
from analytics_mock.runtime import build_runtime
from analytics_mock.settings import Settings
from tests.support.servers import ERROR_PREFIX, clean_env

SECRET = "hunter2"
# Nothing listens on port 1 of the loopback: the connection is refused at once.
UNREACHABLE_PG = f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/x"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """Run `python -m analytics_mock *args` in tmp_path with a clean environment."""

    def run_(
        *args: str, env: Mapping[str, str] | None = None, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "analytics_mock", *args],
            cwd=tmp_path,
            env=clean_env(env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run_


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def assert_one_line_refusal(
    result: subprocess.CompletedProcess[str], *, banner_allowed: bool = False
) -> str:
    """Exit 2, exactly one error line (the only stderr line unless a banner may precede it)."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert SECRET not in output
    lines = result.stderr.splitlines()
    assert lines, "nothing on stderr"
    if banner_allowed:
        # `serve` logs its masked configuration before it opens the database.
        assert len(error_lines(result)) == 1, result.stderr
        assert lines[-1].startswith(ERROR_PREFIX), result.stderr
    else:
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(ERROR_PREFIX), result.stderr
        assert result.stdout == ""
    return lines[-1]


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["serve", "--port", "99999"], {}, "--port"),
        (["serve", "--port", "-1"], {}, "--port"),
        (["serve", "--account-lock-num", "11"], {}, "--account-lock-num"),
        (["serve", "--session-timeout", "0"], {}, "--session-timeout"),
        (["serve", "--max-body-size", "many"], {}, "--max-body-size"),
        (["serve"], {"ANALYTICS_MOCK_PORT": "abc"}, "ANALYTICS_MOCK_PORT"),
        (["serve"], {"ANALYTICS_MOCK_MAINTENANCE": "maybe"}, "ANALYTICS_MOCK_MAINTENANCE"),
        (["migrate"], {"ANALYTICS_MOCK_PORT": "abc"}, "ANALYTICS_MOCK_PORT"),
        (["serve", "--database-url", "mysql://x"], {}, "--database-url"),
        (["serve", "--database-url", f"mysql://u:{SECRET}@h/x"], {}, "--database-url"),
        (
            ["serve"],
            {"ANALYTICS_MOCK_DATABASE_URL": f"mysql://u:{SECRET}@127.0.0.1/x"},
            "ANALYTICS_MOCK_DATABASE_URL",
        ),
        (
            ["serve"],
            {"ANALYTICS_MOCK_DATABASE_URL": f"postgresql+psycopg://u:{SECRET}@127.0.0.1:abc/x"},
            "ANALYTICS_MOCK_DATABASE_URL",
        ),
        (["migrate", "--database-url", f"postgresql://u:{SECRET}@[::1/x"], {}, "--database-url"),
        (["migrate", "--database-url", "not a url"], {}, "--database-url"),
        (["users", "unlock", "bob", "--database-url", f"oracle://u:{SECRET}@h"], {}, "--database"),
        pytest.param(["serve", "--log-format", "xml"], {}, "--log-format"),
        pytest.param(["serve", "--log-level", "loud"], {}, "--log-level"),
        (
            ["serve"],
            {"ANALYTICS_MOCK_SQLITE_SYNCHRONOUS": "SOMETIMES"},
            "ANALYTICS_MOCK_SQLITE_SYNCHRONOUS",
        ),
        pytest.param(
            ["serve", "--sqlite-synchronous", "SOMETIMES"],
            {},
            "--sqlite-synchronous",
        ),
    ],
)
def test_bad_option_value_is_one_line(
    run: Run, args: list[str], env: dict[str, str], named: str, tmp_path: Path
) -> None:
    line = assert_one_line_refusal(run(*args, env=env))
    assert named in line
    # A refused configuration opens nothing.
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("command", "url", "via_env"),
    [
        (["serve"], UNREACHABLE_PG, False),
        (["serve"], UNREACHABLE_PG, True),
        (["serve"], UNREACHABLE_PG + "?bad", True),
        (["serve"], UNREACHABLE_PG + "?sslmode=bogus", False),
        (["serve"], f"postgresql://u:{SECRET}@127.0.0.1:1/x", False),
        (["migrate"], UNREACHABLE_PG, False),
        (["migrate"], UNREACHABLE_PG + "?bad", True),
        (["users", "unlock", "system"], UNREACHABLE_PG, False),
        (["users", "unlock", "system"], UNREACHABLE_PG, True),
    ],
)
def test_unreachable_postgres_is_one_line_without_password(
    run: Run, command: list[str], url: str, via_env: bool
) -> None:
    if via_env:
        result = run(*command, env={"ANALYTICS_MOCK_DATABASE_URL": url})
    else:
        result = run(*command, "--database-url", url)
    line = assert_one_line_refusal(result, banner_allowed=command == ["serve"])
    assert "cannot open the database" in line
    assert "u:***@127.0.0.1:1" in line


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["serve"]),
        pytest.param(["migrate"]),
        pytest.param(["users", "unlock", "system"]),
    ],
)
def test_password_in_url_query_is_never_echoed(run: Run, command: list[str]) -> None:
    url = f"postgresql+psycopg://u@127.0.0.1:1/x?password={SECRET}"
    result = run(*command, "--database-url", url)
    assert_one_line_refusal(result, banner_allowed=command == ["serve"])


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        pytest.param(["migrate"]),
        pytest.param(
            ["users", "unlock", "system"],
        ),
    ],
)
def test_sqlite_directory_that_cannot_exist_is_one_line(
    run: Run, command: list[str], tmp_path: Path
) -> None:
    # A regular file where the database's directory should be: mkdir fails, even as root.
    (tmp_path / "plain-file").write_text("")
    url = f"sqlite:///{tmp_path / 'plain-file' / 'db.sqlite'}"
    line = assert_one_line_refusal(
        run(*command, "--database-url", url), banner_allowed=command == ["serve"]
    )
    # `users unlock` never creates a database: it says there is none.
    assert "cannot open the database" in line or "no database at" in line


@pytest.mark.parametrize(
    ("command", "url"),
    [
        (["serve"], f"postgresql+nodriver://u:{SECRET}@127.0.0.1:1/x"),
        pytest.param(
            ["migrate"],
            f"postgresql+nodriver://u:{SECRET}@127.0.0.1:1/x",
        ),
        # SQLAlchemy knows this dialect, but its driver, pysqlcipher3, is not a dependency.
        pytest.param(["serve"], f"sqlite+pysqlcipher://:{SECRET}@/x.db"),
        pytest.param(["migrate"], f"sqlite+pysqlcipher://:{SECRET}@/x.db"),
    ],
)
def test_unknown_or_missing_driver_is_one_line(run: Run, command: list[str], url: str) -> None:
    if "pysqlcipher" in url and importlib.util.find_spec("pysqlcipher3") is not None:
        pytest.skip("pysqlcipher3 is installed here")
    assert_one_line_refusal(run(*command, "--database-url", url), banner_allowed=True)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"users": [{"name": "bob"}]}', "exactly one of password and passwordHash"),
        (
            json.dumps({"users": [{"name": "bob", "password": SECRET, "permissions": ["Nope"]}]}),
            "permissions",
        ),
        (
            json.dumps({"users": [{"name": "bob", "password": SECRET, "passwordHash": SECRET}]}),
            "exactly one",
        ),
        (json.dumps({"users": [{"name": "bob", "passwordHash": SECRET}]}), "passwordHash"),
        (json.dumps({"users": [{"name": "b o b", "password": SECRET}]}), "users.0.name"),
        (
            json.dumps({"users": [{"name": "bob", "password": SECRET}] * 2}),
            "duplicate user names: bob",
        ),
        (f"users:\n  - name: bob\n    password: {SECRET}\n    x: [unclosed\n", "not valid"),
        ("[1, 2]", "top level"),
        pytest.param(
            f"users:\n  - name: b\udcff\n    password: {SECRET}\n",
            "users.yaml",
        ),
    ],
)
def test_bad_users_file_is_one_line(run: Run, tmp_path: Path, content: str, expected: str) -> None:
    users_file = tmp_path / "users.yaml"
    users_file.write_bytes(content.encode("utf-8", "surrogateescape"))
    db = tmp_path / "db.sqlite"
    result = run("serve", "--database-url", f"sqlite:///{db}", "--users-file", str(users_file))
    line = assert_one_line_refusal(result, banner_allowed=True)
    assert "--users-file" in line
    assert expected in line
    assert not db.exists()


def test_missing_users_file_is_one_line(run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-users.json"
    result = run(
        "serve", "--database-url", f"sqlite:///{tmp_path / 'db'}", "--users-file", str(missing)
    )
    line = assert_one_line_refusal(result, banner_allowed=True)
    assert "cannot read" in line
    assert str(missing) in line


def test_unlock_unknown_user_is_one_line(run: Run) -> None:
    # In a scratch directory: whatever the reason (no database yet), one line and status 2.
    assert_one_line_refusal(run("users", "unlock", "nobody"))


def test_unlock_unknown_user_on_a_migrated_database(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrated = run("migrate", "--database-url", url)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == "database at the newest schema revision"
    line = assert_one_line_refusal(run("users", "unlock", "nobody", "--database-url", url))
    assert line == f"{ERROR_PREFIX} no user called 'nobody'"


def test_unlock_unlocks_a_locked_account(run: Run, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    build_runtime(Settings(database_url=url, secret_key_file=tmp_path / "k")).close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(UserRow).where(UserRow.name == "system").values(locked=True, failed_logins=3)
            )
        result = run("users", "unlock", "system", env={"ANALYTICS_MOCK_DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "unlocked system"
        with engine.connect() as conn:
            row = conn.execute(select(UserRow.locked, UserRow.failed_logins)).one()
        assert tuple(row) == (False, 0)
    finally:
        engine.dispose()


def test_hash_password_reads_stdin(run: Run) -> None:
    result = run("hash-password", stdin="pw\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("$pbkdf2-sha256$")
    assert verify_password("pw", lines[0])
    assert not verify_password("pw\n", lines[0])
    assert "pw" not in result.stderr


def test_hash_password_salts_every_hash(run: Run) -> None:
    first = run("hash-password", stdin="pw\n").stdout.strip()
    second = run("hash-password", stdin="pw\n").stdout.strip()
    assert first != second


def test_hash_password_refuses_empty_input(run: Run) -> None:
    line = assert_one_line_refusal(run("hash-password", stdin="\n"))
    assert line == f"{ERROR_PREFIX} empty password"


def test_version(run: Run) -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"analytics-mock {__version__}"


def test_module_help(run: Run) -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "users", "hash-password"):
        assert command in result.stdout


def test_serve_help_names_each_option_and_its_environment_variable(run: Run) -> None:
    result = run("serve", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in text
        assert f"ANALYTICS_MOCK_{name.upper()}" in text


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "analytics-mock"
    assert script.exists(), f"no console script beside {sys.executable}"
    for args, expected in ((["--help"], "hash-password"), (["--version"], __version__)):
        result = subprocess.run(
            [str(script), *args],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout
    result = subprocess.run(
        [str(script), "serve", "--port", "99999"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_refusal(result)
