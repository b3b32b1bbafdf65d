"""Alembic environment of the reconciliation service: its own metadata and version table, one
transaction for the whole chain, on SQLite or PostgreSQL."""

from __future__ import annotations

from alembic import context

from kora.platform.migrate import run_chain
from kora.reconciliation.adapters.tables import recon_metadata
from kora.reconciliation.migrations import VERSION_TABLE

run_chain(context, recon_metadata, version_table=VERSION_TABLE)
