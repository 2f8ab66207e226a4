"""Constants and small helpers shared by the tests."""

from __future__ import annotations

import base64
from pathlib import Path

SETTINGS_PATH = "/Analytics/v1/objects/EmailServerSettings"
OBJECT_PATH = SETTINGS_PATH + "/mailServerSetting%230"


def basic(user: str = "system", password: str = "manager") -> dict[str, str]:
    """An Authorization header for Basic credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


ADMIN = basic()


def sqlite_at_revision(path: Path, revision: str) -> str:
    """The URL of a new SQLite file at an older schema `revision`, as an older release left it."""
    from alembic import command  # noqa: PLC0415 - Alembic is an extra
    from alembic.config import Config  # noqa: PLC0415
    from sqlalchemy import create_engine  # noqa: PLC0415

    from analytics_mock.db.migrate import SCRIPT_LOCATION  # noqa: PLC0415

    url = f"sqlite:///{path}"
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()
    return url
