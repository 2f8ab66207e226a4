"""Helpers for the runner's tests: holding its threads so that work queues up together, and
counting the trips a call makes to them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Connection

from analytics_mock.db.engine import Database


def reading_threads(db: Database) -> int:
    """How many threads of the runner only read: none on SQLite, where the writer reads too."""
    return 0 if db.dialect == "sqlite" else 3


async def submitted() -> None:
    """Let every task started so far run up to its first wait (it has queued its work then)."""
    await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def runner_threads_held(db: Database) -> AsyncIterator[None]:
    """Every runner thread busy for the block, so the work submitted in it queues up together."""
    gate = threading.Event()
    started = threading.Semaphore(0)

    def block(_connection: Connection) -> None:
        started.release()
        gate.wait(timeout=10)

    count = 1 + reading_threads(db)
    blockers = [asyncio.ensure_future(db.write(block))]
    blockers += [asyncio.ensure_future(db.read(block)) for _ in range(count - 1)]
    try:
        for _ in range(count):  # each blocker runs on a thread of its own, until the gate opens
            assert await asyncio.to_thread(started.acquire, timeout=10)
        yield
        await submitted()
    finally:
        gate.set()
        await asyncio.gather(*blockers)


def trips_to(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that records each trip to the runner from now on, as "read" or "write"."""
    trips: list[str] = []
    runner = db.runner
    read, write = runner.read, runner.write

    async def counted_read(unit: Any, **kwargs: Any) -> Any:
        trips.append("read")
        return await read(unit, **kwargs)

    async def counted_write(unit: Any) -> Any:
        trips.append("write")
        return await write(unit)

    monkeypatch.setattr(runner, "read", counted_read)
    monkeypatch.setattr(runner, "write", counted_write)
    return trips
