"""Everything one app instance owns: settings, database, secret box, authenticator."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from analytics_mock.crypto import SecretBox, secret_box_from_settings
from analytics_mock.db.engine import Database, create_database_engine
from analytics_mock.db.migrate import upgrade_to_head
from analytics_mock.services.auth import Authenticator
from analytics_mock.services.email_settings import ensure_default_setting
from analytics_mock.services.users import load_users_file, sync_users
from analytics_mock.settings import Settings


@dataclass
class Runtime:
    """The state behind one app: built by `build_runtime`, closed by `close`."""

    settings: Settings
    db: Database
    box: SecretBox
    authenticator: Authenticator
    clock: Callable[[], float] = field(default=time.time)

    def close(self) -> None:
        """Release the database connections."""
        self.db.dispose()


def build_runtime(settings: Settings) -> Runtime:
    """Migrate the database, seed it, load the users, and return the ready runtime."""
    users = load_users_file(settings.users_file) if settings.users_file else []
    box = secret_box_from_settings(settings)
    engine = create_database_engine(settings)
    try:
        upgrade_to_head(engine)
        db = Database(engine)
        with db.session(write=True) as session:
            ensure_default_setting(session)
            sync_users(session, users)
    except BaseException:
        engine.dispose()
        raise
    authenticator = Authenticator(
        lock_after=settings.account_lock_num,
        lock_system=settings.lock_system_account,
        session_timeout=settings.session_timeout,
    )
    return Runtime(settings=settings, db=db, box=box, authenticator=authenticator)
