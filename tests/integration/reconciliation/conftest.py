"""A fresh reconciliation database per test, on SQLite and on PostgreSQL (its own database,
separate from the core's)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def recon_empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'kora-recon-test.db'}"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
def recon_url(recon_empty_url: str) -> str:
    from kora.reconciliation.migrations import upgrade

    upgrade(recon_empty_url)
    return recon_empty_url
