"""Everything one app instance owns: settings, database, secret box, caches, the seed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from analytics_mock.crypto import SecretBox, secret_box_from_settings
from analytics_mock.db.engine import Database, Identity, create_database_engine
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

logger = logging.getLogger("analytics_mock")


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


def build_runtime(settings: Settings, *, file_identity: Identity | None = None) -> Runtime:
    """Migrate the database, seed it, load the users, and return the ready runtime.

    `file_identity`: the SQLite file the server opened (a worker gets its supervisor's). When
    the path no longer names it, nothing is migrated or seeded: the runtime answers every
    database call with an error, as the server's other processes do.
    """
    seed = load_seed_file(settings.seed_file) if settings.seed_file else Seed()
    file_users = load_users_file(settings.users_file) if settings.users_file else []
    users = merge_users(seed.users, file_users)
    engine = create_database_engine(settings)
    try:
        db = Database(engine, timeout=settings.database_timeout, file_identity=file_identity)
        if db.file is not None and not db.file.intact():
            logger.error(
                "the database file %s was deleted or replaced after the server opened it: "
                "this process answers database calls with errors until restarted",
                db.file.path,
            )
            box = secret_box_from_settings(settings)
        else:
            upgrade_to_head(engine)
            # Only once the database is known good, so a failed start leaves no key file behind.
            box = secret_box_from_settings(settings)
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
        verifications=settings.password_verifications,
    )
    return Runtime(
        settings=settings, db=db, box=box, authenticator=authenticator, seed=seed, users=users
    )
