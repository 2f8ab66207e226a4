"""What a server start loads: the packages only some paths need stay unimported until then."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI

from analytics_mock import serving
from analytics_mock.cli import main
from analytics_mock.settings import Settings
from tests.support.helpers import sqlite_at_revision

# What `serve` runs before it listens, in a fresh interpreter; prints the top-level packages.
START = """
import json, sys
from analytics_mock.cli import main  # noqa: F401 - the entry point's own imports
from analytics_mock.serving import open_app
from analytics_mock.settings import Settings

options = json.loads(sys.argv[3])
settings = Settings(database_url=sys.argv[1], secret_key_file=sys.argv[2], **options)
open_app(settings).state.runtime.close()
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""
# Needed only to migrate an existing schema, to read a users or seed file, to store an SMTP
# password or serve HTTPS, to send a test mail.
ON_DEMAND = {"alembic", "mako", "yaml", "cryptography", "aiosmtplib"}


def loaded_packages(database_url: str, tmp_path: Path, **settings: object) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANALYTICS_MOCK_")}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            START,
            database_url,
            str(tmp_path / "secret.key"),
            json.dumps(settings, default=str),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    packages: set[str] = set(json.loads(done.stdout))
    return packages


def test_a_plain_start_loads_nothing_on_demand(database_url: str, tmp_path: Path) -> None:
    # First start: an empty database; second start: the database at head.
    for _ in range(2):
        assert "analytics_mock" in (loaded := loaded_packages(database_url, tmp_path))
        assert loaded & ON_DEMAND == set()


def test_files_and_passwords_load_what_they_need(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users: [{name: cy, password: cy-pw, permissions: [Admin]}]")
    seed = tmp_path / "seed.json"
    seed.write_text('{"settings": [{"instanceID": "s#1", "password": "c2VjcmV0"}]}')
    url = f"sqlite:///{tmp_path / 'files.db'}"
    loaded = loaded_packages(url, tmp_path, users_file=users, seed_file=seed)
    assert loaded & ON_DEMAND == {"yaml", "cryptography"}


def test_an_older_schema_still_gets_alembic(tmp_path: Path) -> None:
    url = sqlite_at_revision(tmp_path / "old.db", "0001")
    assert "alembic" in loaded_packages(url, tmp_path)
    assert "alembic" not in loaded_packages(url, tmp_path)


def test_serve_collects_again_once_started_but_not_through_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}

    async def serve_app(app: FastAPI, listeners: list[serving.Listener]) -> None:
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())
        for listener in listeners:
            listener.sock.close()
        app.state.runtime.close()

    monkeypatch.setattr(serving, "serve_app", serve_app)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'gc.db'}",
        secret_key_file=tmp_path / "secret.key",
        port=0,
    )
    gc.disable()  # as `cli._serve` leaves it
    try:
        serving.serve(settings)
    finally:
        gc.unfreeze()
        gc.enable()
    assert seen["enabled"] is True
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 0


def test_a_start_that_fails_leaves_collection_on(capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before logging is configured, which would change this process's root logger.
    assert main(["serve", "--port", "70000"]) == 2
    assert "invalid --port" in capsys.readouterr().err
    assert gc.isenabled()
