"""The reconciliation chain goes up and down on both engines, matches its tables, and keeps
its own version table (it never touches the core's `alembic_version`)."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from kora.platform.db import create_engine
from kora.reconciliation.adapters.tables import recon_metadata
from kora.reconciliation.migrations import VERSION_TABLE, downgrade, upgrade


async def _inspect(url: str) -> tuple[set[str], list[Any]]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:

            def work(sync_conn: sa.Connection) -> tuple[set[str], list[Any]]:
                tables = set(sa.inspect(sync_conn).get_table_names())
                context = MigrationContext.configure(
                    sync_conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
                )
                return tables, compare_metadata(context, recon_metadata)

            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def test_chain_upgrades_downgrades_and_matches_the_tables(recon_empty_url: str) -> None:
    expected = {
        "recon_reports",
        "recon_report_lines",
        "recon_quarantine",
        "recon_payments",
        "recon_results",
        "processed_events",
        "dead_letters",
        "event_outbox",
        "event_outbox_partitions",
        "recon_cases",
        "recon_case_comments",
        "recon_audit",
        "recon_audit_head",
        "recon_alembic_version",
    }
    upgrade(recon_empty_url)
    tables, diff = asyncio.run(_inspect(recon_empty_url))
    assert tables == expected
    assert diff == [], f"tables and migrations disagree: {diff}"

    downgrade(recon_empty_url, "base")
    tables, _ = asyncio.run(_inspect(recon_empty_url))
    assert tables == {"recon_alembic_version"}

    upgrade(recon_empty_url)
    tables, diff = asyncio.run(_inspect(recon_empty_url))
    assert tables == expected
    assert diff == []


def test_the_chain_lives_beside_the_core_chain_in_one_database(tmp_path: Any) -> None:
    from kora.platform.migrate import upgrade as core_upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    core_upgrade(url)
    upgrade(url)
    downgrade(url, "base")
    tables, _ = asyncio.run(_inspect(url))
    assert "alembic_version" in tables
    assert not {"recon_reports", "recon_report_lines", "recon_quarantine"} & tables
