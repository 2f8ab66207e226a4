"""Helpers for the runner's tests: holding its threads so that work queues up together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy import Connection

from analytics_mock.db.engine import Database


def runner_threads(db: Database) -> int:
    """How many threads the runner has on this backend."""
    return 1 if db.dialect == "sqlite" else 4


@contextlib.asynccontextmanager
async def runner_threads_held(db: Database) -> AsyncIterator[None]:
    """Every runner thread busy for the block, so the work submitted in it queues up together."""
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    def block(_connection: Connection) -> None:
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(timeout=5)

    blockers = [asyncio.ensure_future(db.run(block)) for _ in range(runner_threads(db))]
    await asyncio.sleep(0.1)
    try:
        yield
        await asyncio.sleep(0.05)  # what the block submitted reaches the queue
    finally:
        gate.set()
        await asyncio.gather(*blockers)
