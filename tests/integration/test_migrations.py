"""The migration chain goes up and down on both engines, and head matches the models."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import kora.audit.adapters.tables
import kora.events.adapters.tables
import kora.events.consumers
import kora.identity.adapters.tables
import kora.ledger.adapters.tables
import kora.operations.adapters.tables
import kora.payments.adapters.tables
import kora.providers.adapters.tables
import kora.risk.adapters.tables  # noqa: F401  (registers every table)
from kora.platform.db import create_engine, metadata
from kora.platform.migrate import downgrade, upgrade


async def _inspect(url: str) -> tuple[set[str], list[Any]]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:

            def work(sync_conn: sa.Connection) -> tuple[set[str], list[Any]]:
                tables = set(sa.inspect(sync_conn).get_table_names())
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return tables, compare_metadata(context, metadata)

            return await conn.run_sync(work)
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("tmp_sqlite_url"))
    return str(request.getfixturevalue("postgres_database"))


def test_chain_upgrades_downgrades_and_matches_models(empty_url: str) -> None:
    upgrade(empty_url)
    tables, diff = asyncio.run(_inspect(empty_url))
    assert set(metadata.tables) <= tables
    assert diff == [], f"models and migrations disagree: {diff}"

    downgrade(empty_url, "base")
    tables, _ = asyncio.run(_inspect(empty_url))
    assert tables <= {"alembic_version"}

    upgrade(empty_url)
    tables, diff = asyncio.run(_inspect(empty_url))
    assert set(metadata.tables) <= tables
    assert diff == []
