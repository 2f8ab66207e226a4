"""Core statements compiled once and run on the driver's own cursor, for the hot path.

SQLAlchemy's `Connection.execute` costs about 30 us a statement on SQLite (cache lookup,
execution context, result metadata) where SQLite itself needs 5 to 10 us for these one-row
queries, and about 55 us a statement over psycopg's own cost on PostgreSQL: on the hot path that
was most of the database threads' time. The statements stay SQLAlchemy Core (the repositories
hold them, and the dialect compiles them, casts included); on SQLite and psycopg they run on the
driver's cursor with the compiled SQL, inside the transaction the caller's Connection began. A
driver error is raised as SQLAlchemy raises it (`DBAPIError.instance`), and a lost connection is
invalidated as SQLAlchemy would, so callers see no difference. Other drivers go through
SQLAlchemy as usual.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Dialect, Executable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


class Prepared:
    """One Core statement; `rows`, `first` and `run_many` execute it with named parameters.

    Rows come back as named tuples on SQLite and as SQLAlchemy Rows elsewhere: both index and
    name their columns. On SQLite no result type is processed (a Boolean is 0 or 1).
    """

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}

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
        dialect = connection.dialect
        if dialect.driver not in _DIRECT_DRIVERS:
            values = dict(params[0]) if len(params) == 1 else [dict(p) for p in params]
            result = connection.execute(self.statement, values)
            return list(result) if fetch else []
        compiled = self._compiled(dialect)
        driver_connection: Any = connection.connection.driver_connection
        cursor = driver_connection.cursor()
        try:
            if len(params) == 1:
                cursor.execute(compiled.sql, compiled.values(params[0]))
            else:
                cursor.executemany(compiled.sql, [compiled.values(p) for p in params])
            rows = cursor.fetchall() if fetch else []
        except dialect.loaded_dbapi.Error as exc:
            raise _as_sqlalchemy_error(connection, cursor, compiled.sql, exc) from exc
        finally:
            cursor.close()
        row_type = compiled.row_type
        return [row_type._make(row) for row in rows] if row_type else rows

    def _compiled(self, dialect: Dialect) -> _Compiled:
        # One dialect per process in practice; the tests use both.
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            compiled = self._by_dialect[dialect.name] = _Compiled(self.statement, dialect)
        return compiled


# Drivers whose cursors take the compiled SQL and its parameters as SQLAlchemy passes them.
_DIRECT_DRIVERS = frozenset({"pysqlite", "psycopg"})


# Runs one statement without parameters or results.
Sql = Callable[[str], None]


def statement_runner(dbapi_connection: Any) -> Sql:
    """Runs statements without parameters or results (savepoints) on a driver connection.

    psycopg's cursor spends about 25 us of Python on each; its libpq connection runs one in 9
    (`pgconn.exec_`, psycopg's documented low-level access), and fails as psycopg would.
    """
    execute = cast(Sql, dbapi_connection.cursor().execute)
    pgconn = getattr(dbapi_connection, "pgconn", None)
    if pgconn is None:
        return execute
    from psycopg import OperationalError, errors, pq  # noqa: PLC0415 (an optional extra)

    def run(sql: str) -> None:
        if pgconn.transaction_status == pq.TransactionStatus.IDLE:
            execute(sql)  # psycopg opens the transaction first
            return
        result = pgconn.exec_(sql.encode())
        if result.status != pq.ExecStatus.COMMAND_OK:
            state = result.error_field(pq.DiagnosticField.SQLSTATE)
            error = errors.lookup(state.decode()) if state else OperationalError
            raise error((result.error_message or pgconn.error_message).decode(errors="replace"))

    return run


def run_sql(connection: Connection, sql: str) -> None:
    """Run a statement without parameters on the driver's cursor (see the module's reason)."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _as_sqlalchemy_error(connection, cursor, sql, exc) from exc
    finally:
        cursor.close()


def _as_sqlalchemy_error(connection: Connection, cursor: Any, sql: str, exc: Any) -> Exception:
    """The error SQLAlchemy would raise for `exc`, the connection invalidated if it is lost."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)
    if lost and not connection.invalidated:
        connection.invalidate(exc)
    error: Exception = DBAPIError.instance(
        sql,
        None,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return error


class _Compiled:
    """The SQL text, its parameters' order (positional styles) and defaults, and a row type."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.sql = str(compiled)
        self.positional = dialect.positional
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Values written into the statement (`id == 1`) are parameters too.
        self.defaults: dict[str, Any] = dict(compiled.params)
        columns = getattr(statement, "selected_columns", None)
        self.row_type: Any = (
            namedtuple("PreparedRow", [c.key for c in columns], rename=True)
            if columns is not None
            else None
        )

    def values(self, params: Mapping[str, Any] | None) -> list[Any] | dict[str, Any]:
        merged = {**self.defaults, **params} if params else self.defaults
        if not self.positional:  # psycopg's named style takes the mapping itself
            return merged
        return [merged[name] for name in self.names]
