"""What a driver error, or a connection's state, says about the database work in flight."""

from __future__ import annotations

import errno
import os
import sqlite3

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from analytics_mock.errors import OutOfDescriptors, StorageFull

_NO_DESCRIPTOR = (errno.EMFILE, errno.ENFILE)
# PostgreSQL's SQLSTATE disk_full.
_PG_DISK_FULL = "53100"
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


def disk_full(exc: BaseException) -> bool:
    """Whether the database could not write for want of disk space (SQLite's or PostgreSQL's)."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == sqlite3.SQLITE_FULL
    return getattr(orig, "sqlstate", None) == _PG_DISK_FULL


def lost(connection: Connection | None, exc: BaseException) -> bool:
    """Whether the connection is gone (invalidated), so its work can run again on a new one."""
    invalidated = isinstance(exc, DBAPIError) and exc.connection_invalidated
    return connection is not None and (connection.invalidated or invalidated)


def out_of_descriptors(exc: BaseException) -> bool:
    """Whether `exc` came of the process (or system) having no file descriptor left.

    Neither driver tells: SQLite says "unable to open database file", libpq names the errno
    in its text only. A database error is therefore checked by opening a descriptor now.
    """
    if isinstance(exc, OSError):
        return exc.errno in _NO_DESCRIPTOR
    if not isinstance(exc, DBAPIError):
        return False
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError as probe:
        return probe.errno in _NO_DESCRIPTOR
    os.close(fd)
    return False


def reported(exc: BaseException) -> BaseException:
    """The error the caller gets for `exc`: a flood's passing shortage or a full disk is a 503."""
    if disk_full(exc):
        return StorageFull()
    return OutOfDescriptors() if out_of_descriptors(exc) else exc
