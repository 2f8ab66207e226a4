"""Rows a runner transaction has locked: its later units read and write them in memory.

Calls that arrive together share one transaction (`runner.py`), and a PUT reads its object
under a lock, then writes it back. When several of them name the same object, a read and a
write each would be statements on a row that nobody else can see or change until the commit.
Here the first unit that locks a row keeps its record; later units of the same transaction
take it from memory, and the last record written to each row is flushed once, before the
commit. Each call's answer, and what is committed, are what running them one after another
would give; what is in between was never visible outside the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

# In the `info` of the runner's connection while its transaction is open.
_KEY = "analytics_mock.held_rows"

Flush = Callable[[Connection, Any], None]


class HeldRows:
    """The rows locked in one open transaction, with the writes to them not yet flushed."""

    def __init__(self) -> None:
        self._rows: dict[Hashable, Any] = {}
        self._writes: dict[Hashable, tuple[Flush, Any]] = {}

    def get(self, key: Hashable) -> Any | None:
        """The record of a row this transaction holds, as its units last wrote it."""
        return self._rows.get(key)

    def hold(self, key: Hashable, record: Any) -> None:
        """Keep a row's record, read under the lock this transaction now holds."""
        self._rows[key] = record

    def write(self, key: Hashable, record: Any, flush: Flush) -> bool:
        """Write a held row in memory (`flush` writes it later); False if it is not held."""
        if key not in self._rows:
            return False
        self._rows[key] = record
        self._writes[key] = (flush, record)
        return True

    def mark(self) -> tuple[dict[Hashable, Any], dict[Hashable, tuple[Flush, Any]]]:
        """What `undo` goes back to: taken before each unit."""
        return dict(self._rows), dict(self._writes)

    def undo(self, mark: tuple[dict[Hashable, Any], dict[Hashable, tuple[Flush, Any]]]) -> None:
        """Forget what a failed unit held and wrote since `mark`."""
        self._rows, self._writes = mark

    @property
    def pending(self) -> bool:
        """Whether writes wait for `flush`."""
        return bool(self._writes)

    def flush(self, connection: Connection) -> None:
        """Write the last record written to each held row."""
        writes, self._writes = self._writes, {}
        for flush, record in writes.values():
            flush(connection, record)


def held_rows(executor: Session | Connection) -> HeldRows | None:
    """The rows held by the runner's transaction on `executor`, if it is one."""
    if isinstance(executor, Connection):
        held: HeldRows | None = executor.info.get(_KEY)
        return held
    return None


def attach(connection: Connection) -> HeldRows:
    """Start holding rows for the transaction just begun on `connection`."""
    held = connection.info[_KEY] = HeldRows()
    return held


def detach(info: dict[Any, Any]) -> None:
    """Stop, as the transaction ends (`info`: the connection's, read while it was valid)."""
    info.pop(_KEY, None)
