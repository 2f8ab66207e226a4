"""Start-up says what serves where in one line; the serving layer does not import the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import clean_env, running_server

pytestmark = pytest.mark.live


def test_serving_does_not_import_the_command_line() -> None:
    probe = "import sys, analytics_mock.serving; print('analytics_mock.cli' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "False"


def test_start_up_is_one_info_line_with_address_database_mode_and_control_url(
    tmp_path: Path,
) -> None:
    database = tmp_path / "one.db"
    with running_server(tmp_path, "--database-url", f"sqlite:///{database}") as server:
        ours = [
            line
            for line in server.stderr().splitlines()
            if " analytics_mock" in line and " uvicorn" not in line
        ]
    assert len(ours) == 1, ours
    line = ours[0]
    assert " INFO analytics_mock: " in line
    assert f"serving http://127.0.0.1:{server.port}/Analytics/v1" in line
    assert f"database sqlite:///{database}" in line
    assert "1 process" in line
    assert f"control API http://127.0.0.1:{server.port}/_mock/ (open to this machine only)" in line
    assert f"dashboard http://127.0.0.1:{server.port}/_mock/ui" in line
    assert " config " not in server.stderr()
