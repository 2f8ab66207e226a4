"""The Node tools that hold the OpenAPI documents to their users' view, installed on first use.

Redocly's CLI, openapi-typescript and TypeScript's compiler come from the npm registry, pinned,
into `.cache/openapi-tools/` of the checkout (ignored by git), once; later runs reuse them.
Without Node or the registry a test that needs them is skipped on a developer's machine and
fails in CI (CI=true), where a skip would hide that the documents went unchecked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.helpers import install_lock

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".cache" / "openapi-tools"
PACKAGES = {
    "@redocly/cli": "2.77.0",
    "openapi-typescript": "7.13.0",
    "typescript": "5.9.3",
}
INSTALL_TIMEOUT = 600


def unavailable(reason: str) -> None:
    """Skip, or fail in CI, when a tool cannot be had."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs the OpenAPI tools: {reason}")
    pytest.skip(reason)


def node_tools() -> Path:
    """The folder whose node_modules/.bin holds redocly, openapi-typescript and tsc."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        unavailable("node and npm are not installed")
    assert npm is not None
    with install_lock(TOOLS):
        _install(npm)
    return TOOLS


def _install(npm: str) -> None:
    manifest = TOOLS / "package.json"
    wanted = {"private": True, "dependencies": PACKAGES}
    installed = all((TOOLS / "node_modules" / name / "package.json").is_file() for name in PACKAGES)
    if installed and manifest.is_file() and json.loads(manifest.read_text()) == wanted:
        return
    manifest.write_text(json.dumps(wanted, indent=2))
    try:
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error"],
            cwd=TOOLS,
            check=True,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", "") or ""
        unavailable(f"npm install failed: {output[-2000:]}")


def run_tool(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run an installed tool; its output is returned, a non-zero exit is not raised."""
    binary = node_tools() / "node_modules" / ".bin" / name
    env = {**os.environ, "REDOCLY_TELEMETRY": "off", "NO_UPDATE_NOTIFIER": "1"}
    return subprocess.run(
        [str(binary), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
