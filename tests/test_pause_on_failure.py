"""`--analytics-mock-pause-on-failure`: a failed test's server stays up, as the test left it,
until Enter; `mock.ui_url` is its dashboard."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.support.servers import clean_env

pytestmark = pytest.mark.live

INNER = """
def test_ui_url(analytics_mock_server):
    assert analytics_mock_server.ui_url == analytics_mock_server.url + "/_mock/ui"

def test_fails(analytics_mock_server):
    mock = analytics_mock_server
    mock.client.put("/Analytics/v1/objects/EmailServerSettings/mailServerSetting%230",
                    json={"portNumber": 2626})
    assert False, "on purpose"
"""


def start_inner(directory: Path, *options: str) -> subprocess.Popen[str]:
    (directory / "test_inner.py").write_text(INNER)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            *options,
            "test_inner.py",
        ],
        cwd=directory,
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_failed_test_keeps_its_server_until_enter(tmp_path: Path) -> None:
    inner = start_inner(tmp_path, "--analytics-mock-pause-on-failure")
    lines: queue.Queue[str] = queue.Queue()
    stdout = inner.stdout
    assert stdout is not None

    def forward() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=forward, daemon=True).start()
    try:
        seen: list[str] = []
        while not any("Press Enter" in line for line in seen):
            seen.append(lines.get(timeout=60))
        ui_url = next(w for line in seen for w in line.split() if w.endswith("/_mock/ui"))
        assert "test_fails failed" in "".join(seen)
        # Paused: the dashboard answers, and the state is the failed test's.
        page = httpx.get(ui_url, timeout=10)
        assert page.status_code == 200
        assert "analytics-mock dashboard" in page.text
        base = ui_url.removesuffix("/_mock/ui")
        journal = httpx.get(base + "/_mock/requests", timeout=10).json()["requests"]
        assert [entry["method"] for entry in journal] == ["PUT"]
        assert inner.stdin is not None
        inner.stdin.write("\n")
        inner.stdin.flush()
        assert inner.wait(timeout=60) == 1
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait(timeout=10)


def test_without_the_option_nothing_waits(tmp_path: Path) -> None:
    inner = start_inner(tmp_path)
    output, _ = inner.communicate(timeout=120)
    assert inner.returncode == 1, output
    assert "1 failed, 1 passed" in output
    assert "Press Enter" not in output
