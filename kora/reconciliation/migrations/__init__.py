"""The reconciliation service's own Alembic chain (its own database, version table
`recon_alembic_version`), run with `upgrade(url)` / `downgrade(url, rev)`."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from kora.platform import migrate

MIGRATIONS = Path(__file__).resolve().parent
VERSION_TABLE = "recon_alembic_version"


def alembic_config(database_url: str) -> Config:
    return migrate.alembic_config(database_url, migrations=MIGRATIONS)


def upgrade(database_url: str, revision: str = "head") -> None:
    migrate.upgrade(database_url, revision, migrations=MIGRATIONS)


def downgrade(database_url: str, revision: str) -> None:
    migrate.downgrade(database_url, revision, migrations=MIGRATIONS)
