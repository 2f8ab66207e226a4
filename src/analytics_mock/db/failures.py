"""What a driver error, or a connection's state, says about the database work in flight."""

from __future__ import annotations

import sqlite3

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

# libpq's PQTRANS_INERROR, as psycopg reports a connection's transaction status.
_PQTRANS_INERROR = 3


def aborted(connection: Connection) -> bool:
    """Whether PostgreSQL aborted the open transaction (a failed statement, even one caught)."""
    info = getattr(connection.connection.dbapi_connection, "info", None)
    status = getattr(info, "transaction_status", None)
    return status is not None and int(status) == _PQTRANS_INERROR


def busy(exc: BaseException) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlite_errorcode", None)
    return (
        isinstance(orig, sqlite3.OperationalError)
        and code is not None
        and (code & 0xFF == sqlite3.SQLITE_BUSY)
    )


def lost(connection: Connection | None, exc: BaseException) -> bool:
    """Whether the connection is gone (invalidated), so its work can run again on a new one."""
    invalidated = isinstance(exc, DBAPIError) and exc.connection_invalidated
    return connection is not None and (connection.invalidated or invalidated)
