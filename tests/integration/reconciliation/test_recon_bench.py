"""The nightly-batch benchmark as a correctness check, at a small size, on SQLite and
PostgreSQL: every injected discrepancy comes out as its outcome and reason, every line is
stored, every result is persisted with its amount. Timing is never asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import click
import sqlalchemy as sa
from click.testing import CliRunner

from kora.platform.db import create_engine
from kora.reconciliation.adapters.tables import recon_results
from kora.reconciliation.bench import plan, run_bench
from kora.reconciliation.cli import register


async def test_a_2000_line_batch_finds_exactly_the_injected_mix(recon_url: str) -> None:
    engine = create_engine(recon_url, pool_size=2)
    try:
        result = await run_bench(engine, 2_000, provider="momo", seed=7, trace_memory=True)
        async with engine.connect() as conn:
            kinds = dict(
                (
                    await conn.execute(
                        sa.select(recon_results.c.reason, sa.func.count()).group_by(recon_results.c.reason)
                    )
                ).all()
            )
    finally:
        await engine.dispose()

    expected = plan(2_000)
    assert result.problems == []
    assert expected.kinds == {
        "amount": 20, "fee": 20, "status": 20, "duplicate": 10, "late": 10, "unknown": 10, "quarantined": 4,
        "missing_due": 10, "missing_not_due": 6, "failed_unlisted": 10, "matched": 1896,
    }  # fmt: skip
    assert result.outcomes == {
        "MATCHED": 1906, "MISMATCH": 70, "MISSING_INTERNAL": 20, "MISSING_PROVIDER": 10, "PENDING": 6,
    }  # fmt: skip
    # Every readable line stored, the unreadable ones quarantined, one result per line plus one
    # per unlisted captured payment, each with the amount it is about.
    assert result.stored["lines"] == 1_996
    assert result.stored["quarantined"] == 4
    assert result.stored["results_for_lines"] == 1_996
    assert result.stored["results"] == 1_996 + 10 + 6
    assert result.stored["results_without_amount"] == 0
    assert kinds == {None: 1_942, "amount": 20, "fee": 20, "status": 20, "duplicate": 10}
    assert result.tracemalloc_peak_mib is not None
    assert result.tracemalloc_peak_mib > 0
    assert result.rss_peak_mib >= result.rss_before_mib > 0
    assert set(result.seconds) >= {"import", "match", "persist", "total"}


async def test_a_wave_batch_too(recon_url: str) -> None:
    engine = create_engine(recon_url, pool_size=2)
    try:
        result = await run_bench(engine, 1_000, provider="wave", seed=3)
    finally:
        await engine.dispose()
    assert result.problems == []
    assert result.outcomes == plan(1_000).outcomes


def test_the_cli_prints_the_summary_and_checks_it(tmp_path: Path) -> None:
    main = click.Group()
    register(main)
    url = f"sqlite+aiosqlite:///{tmp_path / 'bench.db'}"
    outcome = CliRunner().invoke(main, ["recon", "bench", "--lines", "1000", "--database-url", url])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.output)
    assert summary["ok"] is True
    assert summary["database"] == "sqlite"
    assert summary["outcomes"] == plan(1_000).outcomes
    assert summary["lines_per_second"] > 0
