"""Alembic environment: runs the migration chain on the async engine (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import kora.audit.adapters.tables
import kora.events.adapters.tables
import kora.events.consumers
import kora.identity.adapters.tables
import kora.ledger.adapters.tables
import kora.payments.adapters.tables
import kora.providers.adapters.tables  # noqa: F401  (register every table on the metadata)
from kora.platform.db import create_engine, metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # Kora's SQLite connections run real transactions (BEGIN IMMEDIATE, see kora.platform.db),
        # and SQLite's DDL is transactional: run the whole chain in one transaction as on
        # PostgreSQL, so a refused downgrade (kora.migrations.guards) leaves every revision as it was.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `kora db upgrade` against a database")
asyncio.run(_main())
