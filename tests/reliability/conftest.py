"""Fixtures of the reliability tests: backends, PostgreSQL schemas, real server processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.reliability import StartServer
from tests.support.servers import (
    POSTGRES_URL,
    ServerProcess,
    postgres_schema_url,
    start_server_process,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


@pytest.fixture
def make_database_url(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Fresh, empty databases of a backend: a SQLite file, or a new PostgreSQL schema."""
    with ExitStack() as stack:
        made = 0

        def make(backend: str) -> str:
            nonlocal made
            made += 1
            if backend == "sqlite":
                return f"sqlite:///{tmp_path / f'reliability-{made}.db'}"
            assert POSTGRES_URL is not None, "PostgreSQL is not configured"
            return stack.enter_context(postgres_schema_url(POSTGRES_URL))

        yield make


@pytest.fixture
def start_server(tmp_path: Path, make_database_url: Callable[[str], str]) -> Iterator[StartServer]:
    """Start `analytics-mock serve` processes; every one is killed at teardown.

    It depends on `make_database_url` so that its servers are killed before a PostgreSQL
    schema they use is dropped.
    """
    started: list[ServerProcess] = []

    def start(database_url: str, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = start_server_process(
            tmp_path,
            "--database-url",
            database_url,
            "--test-mail-mode",
            "capture",
            *args,
            env=env,
            index=len(started),
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
