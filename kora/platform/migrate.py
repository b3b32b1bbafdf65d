"""Run an Alembic chain programmatically (used by `kora db upgrade`, `kora serve` and the
reconciliation service's `kora recon db upgrade`), and the environment both chains share."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from kora.platform.db import create_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str, *, migrations: Path = MIGRATIONS) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", database_url)
    return config


def upgrade(database_url: str, revision: str = "head", *, migrations: Path = MIGRATIONS) -> None:
    command.upgrade(alembic_config(database_url, migrations=migrations), revision)


def downgrade(database_url: str, revision: str, *, migrations: Path = MIGRATIONS) -> None:
    command.downgrade(alembic_config(database_url, migrations=migrations), revision)


def run_chain(context: Any, metadata: sa.MetaData, *, version_table: str = "alembic_version") -> None:
    """The body of an `env.py`: run the chain on the async engine, online only.

    Kora's SQLite connections run real transactions (BEGIN IMMEDIATE, see kora.platform.db), and
    SQLite's DDL is transactional: the whole chain runs in one transaction as on PostgreSQL, so
    a refused downgrade (kora.migrations.guards) leaves every revision as it was."""
    if context.is_offline_mode():
        raise SystemExit("offline migrations are not supported; run the upgrade against a database")

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            transactional_ddl=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        url = context.config.get_main_option("sqlalchemy.url")
        if not url:
            raise SystemExit("sqlalchemy.url must be set")
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())
