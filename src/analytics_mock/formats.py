"""The vendor's value formats, shared by every layer that writes or checks them."""

from __future__ import annotations

import re
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


def json_integer(text: str) -> int | float:
    """For `json.loads(parse_int=...)`: an integer past Python's 4,300 digits is infinite.

    It is valid JSON, and past every range, as `1e400` is; `int()` would refuse it.
    """
    try:
        return int(text)
    except ValueError:
        return float("-inf") if text.startswith("-") else float("inf")


# Control characters (Unicode's Cc: C0, DEL and C1) as the body of a regular expression's
# character class, the same text for Python and for a JSON Schema `pattern`. No name, id or
# account the server stores holds one.
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
CONTROL_CHARACTER = re.compile(f"[{CONTROL_CHARACTERS}]")
