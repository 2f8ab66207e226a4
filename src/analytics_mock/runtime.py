"""Everything one app instance owns: settings, database, secret box, caches, the seed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from analytics_mock.crypto import SecretBox, secret_box_from_settings
from analytics_mock.db.engine import Database, create_database_engine
from analytics_mock.db.migrate import upgrade_to_head
from analytics_mock.db.repositories import ControlRepository
from analytics_mock.inflight import CallEpochs
from analytics_mock.services.auth import Authenticator
from analytics_mock.services.controls import (
    ControlCache,
    ResetMemo,
    merge_users,
    reset,
    seed_store,
)
from analytics_mock.services.seed import Seed, load_seed_file
from analytics_mock.services.users import UserSpec, load_users_file
from analytics_mock.settings import Settings


@dataclass
class Runtime:
    """The state behind one app: built by `build_runtime`, closed by `close`."""

    settings: Settings
    db: Database
    box: SecretBox
    authenticator: Authenticator
    seed: Seed
    users: list[UserSpec]
    controls: ControlCache = field(default_factory=ControlCache)
    clock: Callable[[], float] = field(default=time.time)
    calls: CallEpochs = field(default_factory=CallEpochs)
    reset_memo: ResetMemo = field(default_factory=ResetMemo)

    def reset(self) -> None:
        """Fence out the calls in flight, then put everything back to the seed."""
        self.calls.fence()
        with self.db.session(write=True) as session:
            reset(
                session,
                self.box,
                self.seed,
                self.users,
                self.settings.maintenance,
                self.reset_memo,
            )

    def close(self) -> None:
        """Release the database connections."""
        self.db.dispose()


def build_runtime(settings: Settings) -> Runtime:
    """Migrate the database, seed it, load the users, and return the ready runtime."""
    seed = load_seed_file(settings.seed_file) if settings.seed_file else Seed()
    file_users = load_users_file(settings.users_file) if settings.users_file else []
    users = merge_users(seed.users, file_users)
    engine = create_database_engine(settings)
    try:
        upgrade_to_head(engine)
        # Only once the database is known good, so a failed start leaves no key file behind.
        box = secret_box_from_settings(settings)
        db = Database(engine, timeout=settings.database_timeout)
        with db.session(write=True) as session:
            seed_store(session, box, seed, users)
            if settings.maintenance:
                ControlRepository(session).bump(maintenance=True)
    except BaseException:
        engine.dispose()
        raise
    authenticator = Authenticator(
        lock_after=settings.account_lock_num,
        lock_system=settings.lock_system_account,
        session_timeout=settings.session_timeout,
    )
    return Runtime(
        settings=settings, db=db, box=box, authenticator=authenticator, seed=seed, users=users
    )
