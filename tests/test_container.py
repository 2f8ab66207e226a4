"""The image: ../shared/tools/container-smoke builds ./Dockerfile with podman and probes it.

Runs only where podman is installed and the workplace's tool sits beside the checkout; .ci/run
runs the tool itself when podman is missing (the tool installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "container-smoke"

pytestmark = [
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
    pytest.mark.skipif(not TOOL.is_file(), reason=f"no {TOOL}"),
]


def test_image_builds_starts_answers_as_non_root_and_is_healthy() -> None:
    result = subprocess.run(
        [str(TOOL), "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert result.stdout.strip().splitlines()[-1].startswith("PASS"), output[-4000:]
