"""Logging set-up: text for people, JSON lines for log collectors."""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class Throttled:
    """A recurring failure, counted, and logged at most once per `interval` seconds with counts.

    A full disk fails every call's journal entry: one line each would flood the log it fills.
    """

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.count = 0
        self._logger, self._message, self._interval, self._clock = logger, message, interval, clock
        self._unreported = 0
        self._next = -math.inf
        self._lock = threading.Lock()

    def __call__(self, number: int = 1, *, exc_info: bool = False) -> None:
        """Count `number` more; log them and those not yet reported, unless logged lately."""
        with self._lock:
            self.count += number
            self._unreported += number
            now = self._clock()
            if now < self._next:
                return
            unreported, self._unreported, self._next = self._unreported, 0, now + self._interval
            total = self.count
        self._logger.error(
            "%s: %d since the last report, %d in all (reported at most every %g s)",
            self._message,
            unreported,
            total,
            self._interval,
            exc_info=exc_info,
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any `extra=` fields kept as members."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _AccessQueryFilter(logging.Filter):
    """uvicorn's access line with its query string's secrets masked by `redact`."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the query of the line's path, as the journal masks it."""
        args = record.args
        # uvicorn's arguments: client, method, path with its query, HTTP version, status.
        if isinstance(args, tuple) and len(args) == 5 and "?" in str(args[2]):
            path, _, query = str(args[2]).partition("?")
            record.args = (*args[:2], f"{path}?{self._redact(query)}", *args[3:])
        return True


def configure_logging(
    level: str, fmt: str, *, redact_query: Callable[[str], str] | None = None
) -> None:
    """Send every logger, uvicorn's included, through one stderr handler.

    `redact_query` masks the secrets of a query string in uvicorn's access lines.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    if redact_query is not None:
        logging.getLogger("uvicorn.access").filters[:] = [_AccessQueryFilter(redact_query)]
