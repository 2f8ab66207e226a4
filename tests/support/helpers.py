"""Constants and small helpers shared by the tests."""

from __future__ import annotations

import base64

SETTINGS_PATH = "/Analytics/v1/objects/EmailServerSettings"
OBJECT_PATH = SETTINGS_PATH + "/mailServerSetting%230"


def basic(user: str = "system", password: str = "manager") -> dict[str, str]:
    """An Authorization header for Basic credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN = basic()
