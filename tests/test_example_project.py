"""examples/client-project, as a user would run it: a real install into a fresh venv.

Slow (a venv and a pip install from the package index), so it runs only with
ANALYTICS_MOCK_TEST_EXAMPLE_PROJECT=1. It installs a copy of this checkout (not editable; the
copy gets the `pytest11` entry point if pyproject.toml lacks it) and the example project, then
runs the example's tests from its own directory, with no `-p` option: the entry point alone
must bring the fixtures. Twice: as is, and under pytest-xdist (`-n 2`) with a database per
worker (`{worker}`) and the coverage report.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "client-project"
ENTRY_POINT = '\n[project.entry-points.pytest11]\nanalytics_mock = "analytics_mock.pytest_plugin"\n'
IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "*.db",
    "*.key",
    "examples",
)

pytestmark = pytest.mark.skipif(
    os.environ.get("ANALYTICS_MOCK_TEST_EXAMPLE_PROJECT") != "1",
    reason="set ANALYTICS_MOCK_TEST_EXAMPLE_PROJECT=1 to install and run examples/client-project",
)


def run(*command: str | Path, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{output}"
    return output


def test_example_project_passes_against_an_installed_analytics_mock(tmp_path: Path) -> None:
    package = tmp_path / "analytics-mock"
    shutil.copytree(REPO, package, ignore=IGNORED)
    pyproject = package / "pyproject.toml"
    if "[project.entry-points.pytest11]" not in pyproject.read_text():
        pyproject.write_text(pyproject.read_text() + ENTRY_POINT)
    example = tmp_path / "client-project"
    shutil.copytree(EXAMPLE, example, ignore=IGNORED)

    # Nothing of this session leaks in: no plugin settings, no emulator settings.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "ANALYTICS_MOCK_", "PYTHON", "VIRTUAL_ENV"))
    }
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", package, f"{example}[test]", cwd=tmp_path, env=env)

    output = run(python, "-m", "pytest", "-p", "no:cacheprovider", cwd=example, env=env)

    assert re.search(r"^=+ 18 passed in ", output, re.MULTILINE), output

    url = f"sqlite:///{tmp_path}/emulator-{{worker}}.db"
    output = run(
        python,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-n",
        "2",
        "--analytics-mock-database-url",
        url,
        "--analytics-mock-coverage",
        cwd=example,
        env=env,
    )
    assert re.search(r"^=+ 18 passed in ", output, re.MULTILINE), output
    assert sorted(p.name for p in tmp_path.glob("emulator-*.db")) == [
        "emulator-gw0.db",
        "emulator-gw1.db",
    ]
    assert "analytics-mock coverage" in output
    assert re.search(
        r"^  PUT /Analytics/v1/objects/EmailServerSettings/\{id\}: saw 200, 500; never ",
        output,
        re.MULTILINE,
    ), output
