"""Helpers of the reliability tests: their backends, checks of the vendor's error envelope, timings.

The server processes and PostgreSQL schemas they run on come from tests/support/servers.py; the
fixtures that start them (`start_server`, `make_database_url`) from tests/reliability/conftest.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import httpx
import pytest

from tests.support.servers import POSTGRES_URL, ServerProcess

BACKEND_PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(
                POSTGRES_URL is None, reason="ANALYTICS_MOCK_TEST_POSTGRES_URL is not set"
            ),
        ],
    ),
]

# The type of the `start_server` fixture of tests/reliability/conftest.py.
StartServer = Callable[..., ServerProcess]

ENVELOPE_KEYS = {"errorSource", "message", "messageID", "application"}
# What a leaked stack trace or driver error would put in a body.
LEAK_MARKERS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "sqlite3")


def envelope_problems(response: httpx.Response, status: int | tuple[int, ...]) -> list[str]:
    """What is wrong with `response` as the vendor's error envelope of `status` (empty: ok)."""
    statuses = (status,) if isinstance(status, int) else status
    problems: list[str] = []
    if response.status_code not in statuses:
        problems.append(f"status {response.status_code}, expected {statuses}")
    if response.headers.get("content-type") != "application/json":
        problems.append(f"content-type {response.headers.get('content-type')!r}")
    try:
        body = response.json()
    except ValueError:
        return [*problems, f"body is not JSON: {response.text[:200]!r}"]
    if not isinstance(body, dict) or set(body) != ENVELOPE_KEYS:
        return [*problems, f"body is not the envelope: {response.text[:200]!r}"]
    if body["application"] != "Analytics":
        problems.append(f"application {body['application']!r}")
    if not str(body["message"]).startswith(f"{body['messageID']} "):
        problems.append(f"message {body['message']!r} does not start with its ID")
    raw_path = response.request.url.raw_path.split(b"?", 1)[0].decode("latin-1")
    if body["errorSource"] != raw_path:
        problems.append(f"errorSource {body['errorSource']!r} is not the path {raw_path!r}")
    problems.extend(
        f"{marker!r} leaked in the body" for marker in LEAK_MARKERS if marker in response.text
    )
    return problems


class Timings:
    """Seconds each sample took, one of each per round: `interleaved` takes them."""

    def __init__(self, times: dict[str, list[float]]) -> None:
        self.times = times

    def median(self, name: str) -> float:
        """The median seconds of one sample."""
        return statistics.median(self.times[name])

    def difference(self, first: str, second: str) -> float:
        """The median of the differences of `first` and `second` taken in the same rounds.

        It estimates the difference of their medians, but load that changes from one round to
        the next (another process's burst) falls on both sides of each difference and cancels:
        on a busy two-core machine it varied by 0.2 ms where the difference of medians varied
        by 2 ms.
        """
        pairs = zip(self.times[first], self.times[second], strict=True)
        return statistics.median(a - b for a, b in pairs)

    def __repr__(self) -> str:
        medians = {name: round(self.median(name) * 1000, 3) for name in self.times}
        return f"Timings(medians in ms: {medians})"


def interleaved(
    samples: Mapping[str, Callable[[], object]],
    rounds: int,
    holds: Callable[[Timings], bool],
    attempts: int = 3,
) -> Timings:
    """Each sample `rounds` times, in turns; taken again until `holds`, `attempts` times at most.

    One of each per round, in a rotating order, so that whatever loads the machine, and what
    one sample leaves behind (a commit's write-back, a cold cache), weighs on all alike. A
    difference the code makes shows in every attempt; noise that breaks one seldom breaks the
    next.
    """
    names = list(samples)
    timings = Timings({})
    for _ in range(attempts):
        times: dict[str, list[float]] = {name: [] for name in names}
        for turn in range(rounds):
            shift = turn % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                samples[name]()
                times[name].append(time.perf_counter() - started)
        timings = Timings(times)
        if holds(timings):
            break
    return timings
