"""The pytest plugin in pytester sessions: the inner test files' preamble, the runner fixtures."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from analytics_mock.testing import AnalyticsMock, ServerThread, isolated_settings
from tests.support.helpers import OBJECT_PATH, SETTINGS_PATH

PLUGIN = "analytics_mock.pytest_plugin"

# The start of every inner test file.
PREAMBLE = f"""
import json, time
import httpx, pytest
LIST = {SETTINGS_PATH!r}
OBJECT = {OBJECT_PATH!r}
BOTH = pytest.mark.parametrize("name", ["analytics_mock", "analytics_mock_server"])

def hostname(mock):
    response = mock.client.get(LIST)
    assert response.status_code == 200, response.text
    return response.json()["data"][0]["hostname"]
"""

Run = Callable[..., pytest.RunResult]


@pytest.fixture(scope="module")
def warm_modules(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Import here whatever the emulators import on first use.

    A pytester session in this process unloads, when it ends, the modules it imported first;
    a second copy of one (httpcore, say) would break code that kept the first (httpx).
    """
    settings = isolated_settings(
        database_url=f"sqlite:///{tmp_path_factory.mktemp('warm') / 'warm.db'}",
        secret_key="warm",
        test_mail_mode="capture",
    )
    with AnalyticsMock(settings) as mock:
        assert mock.client.get(SETTINGS_PATH).status_code == 200
    server = ServerThread(settings)
    try:
        with httpx.Client(base_url=server.url, auth=("system", "manager")) as http:
            assert http.get(SETTINGS_PATH).status_code == 200
    finally:
        server.stop()


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, warm_modules: None) -> Run:
    """Run pytest in this process on the pytester directory, with only this plugin loaded."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_inprocess("-p", PLUGIN, "-p", "no:cacheprovider", *args)

    return run
