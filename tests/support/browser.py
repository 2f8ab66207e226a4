"""Helpers of the browser tests in tests/ui/: screenshots of the dashboard for the docs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"


def screenshot(tab: Any, name: str, locator: Any = None) -> None:
    """With ANALYTICS_MOCK_UPDATE_SCREENSHOTS=1, write docs/img/<name>.png for the docs."""
    if os.environ.get("ANALYTICS_MOCK_UPDATE_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (locator or tab).screenshot(path=str(SCREENSHOTS / f"{name}.png"))
