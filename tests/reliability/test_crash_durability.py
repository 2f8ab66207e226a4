"""SIGKILL a real server over SQLite in the middle of concurrent PUTs, restart it, check the data.

Several client threads PUT distinct `portNumber` values to the one object; the server is killed
with SIGKILL once a seeded-random number of writes was acknowledged, then restarted on the same
file. The invariant, with every value written exactly once:

- writes to one object are serialised, so if write y was sent after write x was acknowledged,
  y committed after x: x is then *superseded*;
- every acknowledged write is durable (`--sqlite-synchronous FULL`), so the last one to commit
  is either an acknowledged write that no acknowledged write superseded, or a write that was in
  flight when the server was killed (sent before the kill, never acknowledged);
- so the stored value after the restart is one of those, and nothing else (not a superseded
  value, not an older round's value once this round had an acknowledged write).

The database must also pass `PRAGMA integrity_check` after each crash, and after a crash in
the middle of a journal-heavy load the request journal must still be readable.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.helpers import ADMIN, OBJECT_PATH, SETTINGS_PATH
from tests.support.reliability import StartServer
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.live

SEED = 20_251_124
CLIENTS = 4
JOURNAL_SIZE = 200
JOIN_TIMEOUT = 20.0


@dataclass
class Write:
    value: int
    sent: float
    acked: float | None = None


@dataclass
class Load:
    """The writes of one round, shared by the client threads."""

    writes: list[Write] = field(default_factory=list)
    acks: int = 0
    errors: list[str] = field(default_factory=list)
    condition: threading.Condition = field(default_factory=threading.Condition)
    stop: threading.Event = field(default_factory=threading.Event)

    def wait_for_acks(self, count: int, timeout: float) -> bool:
        with self.condition:
            return self.condition.wait_for(
                lambda: self.acks >= count or bool(self.errors), timeout=timeout
            )


def writer(url: str, values: range, load: Load) -> None:
    """PUT each value in turn until stopped or the server goes away."""
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for value in values:
            if load.stop.is_set():
                return
            write = Write(value, time.monotonic())
            with load.condition:
                load.writes.append(write)
            try:
                response = http.put(OBJECT_PATH, json={"portNumber": value}, headers=ADMIN)
            except httpx.TransportError:
                return  # the server was killed: this write stays in flight
            acked = time.monotonic()
            with load.condition:
                if response.status_code != 200:
                    load.errors.append(f"PUT {value}: {response.status_code} {response.text}")
                    load.condition.notify_all()
                    return
                write.acked = acked
                load.acks += 1
                load.condition.notify_all()


def journal_writer(url: str, load: Load) -> None:
    """Calls that make big journal rows (a 60 KB refused body each) and reads."""
    padding = "x" * 60_000
    with httpx.Client(base_url=url, timeout=10.0) as http:
        while not load.stop.is_set():
            try:
                refused = http.put(OBJECT_PATH, json={"padding": padding}, headers=ADMIN)
                listed = http.get(SETTINGS_PATH, headers=ADMIN)
            except httpx.TransportError:
                return
            if refused.status_code != 400 or listed.status_code != 200:
                with load.condition:
                    load.errors.append(f"journal load: {refused.status_code} {listed.status_code}")
                    load.condition.notify_all()
                return


def allowed_values(load: Load, killed_at: float, before: int) -> set[int]:
    """The values the object may hold after the crash (see the module's docstring)."""
    acked = [w for w in load.writes if w.acked is not None]
    in_flight = {w.value for w in load.writes if w.acked is None and w.sent <= killed_at}
    latest = {
        x.value for x in acked if x.acked is not None and not any(y.sent > x.acked for y in acked)
    }
    return latest | in_flight | (set() if acked else {before})


def integrity(database: Path) -> str:
    with closing(sqlite3.connect(database)) as conn:
        (result,) = conn.execute("PRAGMA integrity_check").fetchone()
        return str(result)


def stored_port(server: ServerProcess) -> int:
    with server.client() as http:
        response = http.get(SETTINGS_PATH, headers=ADMIN)
    assert response.status_code == 200, response.text
    [setting] = response.json()["data"]
    port: int = setting["portNumber"]
    return port


def crash_round(
    server: ServerProcess, rng: random.Random, round_index: int, before: int, journal: bool
) -> tuple[Load, float]:
    """Load the server, SIGKILL it after a random number of acknowledged writes."""
    load = Load()
    base = 1000 + round_index * 12_000
    threads = [
        threading.Thread(
            target=writer, args=(server.url, range(base + c * 3000, base + (c + 1) * 3000), load)
        )
        for c in range(CLIENTS)
    ]
    if journal:
        threads += [
            threading.Thread(target=journal_writer, args=(server.url, load)) for _ in range(2)
        ]
    target = rng.randint(30, 150)
    for thread in threads:
        thread.start()
    try:
        reached = load.wait_for_acks(target, timeout=60.0)
        server.kill()
        # Taken once the process is gone: a write sent while the signal was on its way may
        # still have committed, so it counts as in flight, not as sent after the kill.
        killed_at = time.monotonic()
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(JOIN_TIMEOUT)
    assert not any(thread.is_alive() for thread in threads), "a client thread hung"
    assert load.errors == [], load.errors
    assert reached, f"only {load.acks} of {target} writes acknowledged"
    return load, killed_at


def test_acknowledged_writes_survive_sigkill(start_server: StartServer, tmp_path: Path) -> None:
    database = tmp_path / "crash.db"
    url = f"sqlite:///{database}"
    args = ("--sqlite-synchronous", "FULL", "--journal-size", str(JOURNAL_SIZE))
    rng = random.Random(SEED)
    server = start_server(url, *args).wait_ready()
    before = stored_port(server)
    # Three crashes under PUTs only, then one under a journal-heavy load.
    for round_index, journal in enumerate([False, False, False, True]):
        load, killed_at = crash_round(server, rng, round_index, before, journal)
        assert integrity(database) == "ok"
        server = start_server(url, *args).wait_ready()
        after = stored_port(server)
        allowed = allowed_values(load, killed_at, before)
        assert after in allowed, (
            f"round {round_index}: {after} stored, allowed {sorted(allowed)}; "
            f"{load.acks} acknowledged of {len(load.writes)} sent"
        )
        if journal:
            with server.client() as http:
                listed = http.get("/_mock/requests", params={"limit": 10_000})
            assert listed.status_code == 200, listed.text
            assert 0 < len(listed.json()["requests"]) <= JOURNAL_SIZE + 1
        before = after
    assert server.stop() == 0, server.output()
    assert integrity(database) == "ok"


def test_allowed_values_follow_the_invariant() -> None:
    load = Load()
    # x acknowledged, then y sent (x superseded); z concurrent with y; w in flight at the kill.
    load.writes = [
        Write(1, sent=0.0, acked=1.0),
        Write(2, sent=2.0, acked=4.0),
        Write(3, sent=3.0, acked=5.0),
        Write(4, sent=6.0),
        Write(5, sent=9.0),  # sent after the kill: never reached the server
    ]
    assert allowed_values(load, killed_at=8.0, before=25) == {2, 3, 4}
    assert allowed_values(Load(), killed_at=8.0, before=25) == {25}
    only_in_flight = Load(writes=[Write(7, sent=1.0)])
    assert allowed_values(only_in_flight, killed_at=8.0, before=25) == {7, 25}
