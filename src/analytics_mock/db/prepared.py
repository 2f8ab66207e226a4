"""Core statements compiled once and run on SQLite's own cursor, for the hot path.

SQLAlchemy's `Connection.execute` costs about 30 us a statement (cache lookup, execution
context, result metadata) where SQLite itself needs 5 to 10 us for these one-row queries; on
the hot path that was most of the database thread's time. The statements stay SQLAlchemy Core
(the repositories hold them, and the dialect compiles them); on SQLite they run on the driver's
cursor with the compiled SQL, inside the transaction the caller's Connection began. Elsewhere
they run through SQLAlchemy as usual, which keeps its disconnect handling for network databases.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Executable
from sqlalchemy.orm import Session


class Prepared:
    """One Core statement; `rows`, `first` and `run_many` execute it with named parameters.

    Rows come back as named tuples on SQLite and as SQLAlchemy Rows elsewhere: both index and
    name their columns. On SQLite no result type is processed (a Boolean is 0 or 1).
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._sqlite: _Compiled | None = None

    def rows(
        self, executor: Session | Connection, params: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """Every row the statement returns."""
        return self._execute(executor, [params or {}], fetch=True)

    def first(
        self, executor: Session | Connection, params: Mapping[str, Any] | None = None
    ) -> Any | None:
        """The first row, or None."""
        rows = self.rows(executor, params)
        return rows[0] if rows else None

    def run(self, executor: Session | Connection, params: Mapping[str, Any] | None = None) -> None:
        """Execute a statement that returns no rows."""
        self._execute(executor, [params or {}], fetch=False)

    def run_many(self, executor: Session | Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Execute the statement once per parameter set (an INSERT of many rows)."""
        if params:
            self._execute(executor, list(params), fetch=False)

    def _execute(
        self, executor: Session | Connection, params: list[Mapping[str, Any]], *, fetch: bool
    ) -> list[Any]:
        connection = executor.connection() if isinstance(executor, Session) else executor
        if connection.dialect.name != "sqlite":
            values = dict(params[0]) if len(params) == 1 else [dict(p) for p in params]
            result = connection.execute(self.statement, values)
            return list(result) if fetch else []
        compiled = self._compiled(connection.dialect)
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if len(params) == 1:
                cursor.execute(compiled.sql, compiled.values(params[0]))
            else:
                cursor.executemany(compiled.sql, [compiled.values(p) for p in params])
            rows = cursor.fetchall() if fetch else []
        finally:
            cursor.close()
        row_type = compiled.row_type
        return [row_type._make(row) for row in rows] if row_type else rows

    def _compiled(self, dialect: Dialect) -> _Compiled:
        if self._sqlite is None:
            self._sqlite = _Compiled(self.statement, dialect)
        return self._sqlite


class _Compiled:
    """The SQL text, the order of its parameters with their defaults, and a row type."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Values written into the statement (`id == 1`) are parameters too.
        self.defaults: dict[str, Any] = dict(compiled.params)
        columns = getattr(statement, "selected_columns", None)
        self.row_type: Any = (
            namedtuple("PreparedRow", [c.key for c in columns], rename=True)
            if columns is not None
            else None
        )

    def values(self, params: Mapping[str, Any] | None) -> list[Any]:
        merged = {**self.defaults, **params} if params else self.defaults
        return [merged[name] for name in self.names]
