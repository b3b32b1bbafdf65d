"""Alembic environment: runs the migration chain on the async engine (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import context

import kora.audit.adapters.tables
import kora.events.adapters.tables
import kora.events.consumers
import kora.identity.adapters.tables
import kora.ledger.adapters.tables
import kora.operations.adapters.tables
import kora.payments.adapters.tables
import kora.providers.adapters.tables
import kora.risk.adapters.tables  # noqa: F401  (register every table on the metadata)
from kora.platform.db import metadata
from kora.platform.migrate import run_chain

run_chain(context, metadata)
