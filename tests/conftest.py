"""Shared fixtures. Databases are real: a temporary SQLite file, and PostgreSQL when
KORA_TEST_POSTGRES_URL is reachable. Set KORA_REQUIRE_SERVICES=1 (CI does) to turn a skip for
an absent service into a failure."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from kora.platform.db import create_engine, metadata

POSTGRES_ADMIN_URL = os.environ.get("KORA_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REQUIRE_SERVICES = os.environ.get("KORA_REQUIRE_SERVICES") == "1"


def service_unavailable(reason: str) -> None:
    """Skip on a laptop without the service; fail in CI, where it must be there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable (KORA_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture
def spans() -> Iterator[Any]:
    """Tracing on (as the ASGI entrypoint turns it on in production; create_app does not), with
    every finished span kept in memory: an `InMemorySpanExporter`."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from kora.observability import configure_tracing

    provider = configure_tracing(service_name="kora-test", exporter="none")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    provider.shutdown()


@pytest.fixture
def tmp_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'kora-test.db'}"


@pytest.fixture
async def sqlite_engine(tmp_sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    """A fresh SQLite database with every module's tables (created from metadata, for unit-ish
    adapter tests; the migration chain itself is tested in tests/integration/test_migrations.py)."""
    import kora.bootstrap  # noqa: F401  (registers every module's tables on metadata)

    engine = create_engine(tmp_sqlite_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


def _sync_admin_url() -> str:
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A brand-new, empty PostgreSQL database for one test; dropped afterwards. Yields its URL."""
    with _fresh_postgres_database() as url:
        yield url


@pytest.fixture
def another_postgres_database(postgres_database: str) -> Iterator[str]:
    """A second fresh database on the same server, for tests of two services (each its own database)."""
    with _fresh_postgres_database() as url:
        yield url


@contextmanager
def _fresh_postgres_database() -> Iterator[str]:
    import asyncio

    name = f"kora_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        engine = create_engine(POSTGRES_ADMIN_URL, pool_size=1)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(sa.text(sql))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any connection failure means "no PostgreSQL here"
        service_unavailable(f"PostgreSQL not reachable at KORA_TEST_POSTGRES_URL: {exc!r}"[:300])
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _upgrade(url: str) -> None:
    from kora.platform.migrate import upgrade

    upgrade(url)


@pytest.fixture
def migrated_postgres_url(postgres_database: str) -> str:
    """A fresh PostgreSQL database brought to head by the real migration chain."""
    _upgrade(postgres_database)
    return postgres_database


@pytest.fixture
def migrated_sqlite_url(tmp_sqlite_url: str) -> str:
    _upgrade(tmp_sqlite_url)
    return tmp_sqlite_url


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("migrated_sqlite_url"))
    return str(request.getfixturevalue("migrated_postgres_url"))


@pytest.fixture
async def api(migrated_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """Kora's HTTP API in process (ASGI), on a migrated SQLite and PostgreSQL database."""
    async with _api(migrated_url, tmp_path) as handle:
        yield handle


@pytest.fixture
async def sqlite_api(migrated_sqlite_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    async with _api(migrated_sqlite_url, tmp_path) as handle:
        yield handle


@pytest.fixture
async def postgres_api(migrated_postgres_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    async with _api(migrated_postgres_url, tmp_path) as handle:
        yield handle


@asynccontextmanager
async def _api(url: str, tmp_path: Path, **extra_settings: str) -> AsyncIterator[Any]:
    import httpx
    from asgi_lifespan import LifespanManager

    from kora.bootstrap import Kora
    from kora.http.app import create_app
    from tests.support.api import Api, test_settings

    kora = Kora(test_settings(url, tmp_path, **extra_settings))
    app = create_app(kora)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kora.test") as client:
            handle = Api(client)
            handle.kora = kora  # type: ignore[attr-defined]
            yield handle
