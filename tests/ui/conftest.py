"""A real Chromium (Debian's, driven by Playwright) against a real `analytics-mock serve`.

Playwright's own browser download is not reachable here: the tests drive `/usr/bin/chromium`
(`apt-get install -y chromium`, which `.ci/run` does when it is missing; another Chromium
build with ANALYTICS_MOCK_TEST_CHROMIUM). axe-core comes from
npm into a cache directory. Outside CI a missing browser or npm skips these tests; in CI
(`CI=true`) it fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from playwright.sync_api import Dialog, sync_playwright

from tests.support.helpers import install_lock
from tests.support.servers import ServerProcess, running_server

# Debian's Chromium; another Chromium-based browser with ANALYTICS_MOCK_TEST_CHROMIUM.
CHROMIUM = os.environ.get("ANALYTICS_MOCK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_VERSION = "4.10.2"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail in CI, where every browser test must run."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is
# started, which the anyio tests of other modules cannot share.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        unavailable(f"no {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, installed once with npm into the user's cache directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    target = cache / "analytics-mock-tests" / f"axe-core-{AXE_VERSION}"
    script = target / "node_modules" / "axe-core" / "axe.min.js"
    with install_lock(target):
        if not script.exists():
            _install_axe(target)
    return script.read_text(encoding="utf-8")


def _install_axe(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm is not installed (apt-get install -y npm)")
    subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(target),
            "--no-audit",
            "--no-fund",
            f"axe-core@{AXE_VERSION}",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module, test mails captured; each test resets it."""
    directory = tmp_path_factory.mktemp("ui-server")
    url = f"sqlite:///{directory / 'ui.db'}"
    with running_server(directory, "--database-url", url, "--test-mail-mode", "capture") as process:
        yield process


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Any]:
    """A fresh browser tab on a server reset to its seed; a dialog fails the test."""
    with server.client() as http:
        assert http.post("/_mock/reset").status_code == 200
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield tab
    context.close()
    assert dialogs == [], dialogs
    assert errors == [], errors
