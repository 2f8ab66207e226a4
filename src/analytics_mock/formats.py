"""The vendor's value formats, shared by every layer that writes or checks them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NoReturn

# The vendor's integers are Java ints, and each goes into an INTEGER column.
MAX_INT = 2_147_483_647


def vendor_time(epoch: float) -> str:
    """`yyyy-mm-ddThh:mm:ss.mmm+00:00`: milliseconds, the offset written out, never `Z`."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def reject_json_constant(name: str) -> NoReturn:
    """For `json.loads(parse_constant=...)`: `NaN` and `Infinity` are Python's, not JSON."""
    raise ValueError(f"{name} is not JSON")
