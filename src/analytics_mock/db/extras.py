"""Optional parts of an install: PostgreSQL support and Alembic come with extras."""

from __future__ import annotations

import importlib


class MissingExtraError(ImportError):
    """A part this path needs is not installed; the message is one line with the pip command."""


def require_extra(module: str, extra: str, what: str) -> None:
    """Import `module`, or stop with the pip command that installs the extra providing it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"{what} is not installed: pip install 'analytics-mock[{extra}]'"
        ) from None
