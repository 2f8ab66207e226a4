"""Shared fixtures: an isolated app per test on SQLite, and on PostgreSQL when configured.

Set ANALYTICS_MOCK_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)
and every database-backed test runs on both backends; an unreachable server is an error then,
never a skip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from analytics_mock.app import create_app
from analytics_mock.runtime import Runtime, build_runtime
from analytics_mock.settings import Settings
from tests.support.servers import POSTGRES_URL, postgres_schema_url

BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    assert POSTGRES_URL is not None
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def fresh_postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema, dropped after the test."""
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    with postgres_schema_url(admin_url, prefix="t_") as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each configured backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'analytics-mock.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for an isolated app; keyword arguments override fields."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "secret_key_file": tmp_path / "secret.key",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(settings)
    yield built
    built.close()


@pytest.fixture
async def client(settings: Settings, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of an app over a fresh database."""
    app = create_app(settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:22015") as http:
        yield http


@pytest.fixture
def make_client(
    make_settings: Callable[..., Settings],
) -> Iterator[Callable[..., httpx.AsyncClient]]:
    """Clients of apps built with other settings over the same database."""
    runtimes: list[Runtime] = []

    def make(**overrides: Any) -> httpx.AsyncClient:
        settings = make_settings(**overrides)
        built = build_runtime(settings)
        runtimes.append(built)
        transport = httpx.ASGITransport(app=create_app(settings, runtime=built))
        return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:22015")

    yield make
    for built in runtimes:
        built.close()
