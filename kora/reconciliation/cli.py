"""`kora recon ...`: the reconciliation service's commands (its own database and key).
Registered on the `kora` group by kora/cli.py through `register(main)`."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import click


@click.group("recon")
def recon() -> None:
    """Reconciliation of providers' settlement reports (its own database: KORA_RECON_DATABASE_URL)."""


@recon.group("db")
def recon_db() -> None:
    """The reconciliation database's schema."""


@recon_db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Bring the reconciliation database to REVISION."""
    from kora.reconciliation.migrations import upgrade
    from kora.reconciliation.service.settings import ReconSettings

    upgrade(ReconSettings.from_env().database_url, revision)
    click.echo(f"reconciliation database at {revision}")


@recon.command("import")
@click.option("--provider", required=True, help="the report's dialect: momo, wave, card...")
@click.option("--actor", required=True, help="who imports it (recorded with the report)")
@click.option("--day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="the report's day")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_command(provider: str, actor: str, day: object, file: Path) -> None:
    """Import FILE, a settlement report of PROVIDER; prints the result as JSON."""
    from datetime import datetime

    from kora.kernel import SystemClock
    from kora.observability import configure_logging
    from kora.platform.db import create_engine
    from kora.reconciliation.adapters.crypto import AesGcmReportCipher
    from kora.reconciliation.adapters.sql import SqlReportStore
    from kora.reconciliation.domain.dialect import DialectError
    from kora.reconciliation.domain.parsing import ReportError
    from kora.reconciliation.service.importing import ReportImports, ReportTooLarge
    from kora.reconciliation.service.settings import ReconSettings

    settings = ReconSettings.from_env()
    configure_logging(level=os.environ.get("KORA_LOG_LEVEL", "INFO"), json=True, service="kora-recon")
    report_day = day.date() if isinstance(day, datetime) else None
    data = file.read_bytes()

    async def run() -> dict[str, object]:
        engine = create_engine(settings.database_url, pool_size=2)
        try:
            imports = ReportImports(
                SqlReportStore(engine), AesGcmReportCipher.from_setting(settings.report_key), SystemClock()
            )
            result = await imports.import_report(provider, data, filename=file.name, actor=actor, report_day=report_day)
        finally:
            await engine.dispose()
        return {
            "report_id": str(result.report_id),
            "provider": result.provider,
            "lines": result.lines,
            "quarantined": result.quarantined,
            "duplicate": result.duplicate,
        }

    try:
        output = asyncio.run(run())
    except (DialectError, ReportError, ReportTooLarge) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(output))


@recon.command("match")
@click.option("--report-id", required=True, type=click.UUID, help="the stored report to match")
def match_command(report_id: object) -> None:
    """Match a stored report against Kora's payments of its provider, as of now; stores the
    results in place of the report's previous run and prints the count of each outcome as JSON."""
    import uuid

    from kora.kernel import SystemClock
    from kora.observability import configure_logging
    from kora.platform.db import create_engine
    from kora.reconciliation.domain.rules import MatchRules
    from kora.reconciliation.service.importing import ReportNotFound
    from kora.reconciliation.service.match_run import run_match
    from kora.reconciliation.service.settings import ReconSettings

    assert isinstance(report_id, uuid.UUID)
    settings = ReconSettings.from_env()
    configure_logging(level=os.environ.get("KORA_LOG_LEVEL", "INFO"), json=True, service="kora-recon")
    clock = SystemClock()

    async def run() -> dict[str, int]:
        engine = create_engine(settings.database_url, pool_size=2)
        try:
            return await run_match(engine, report_id, rules=MatchRules(), as_of=clock.now(), clock=clock)
        finally:
            await engine.dispose()

    try:
        counts = asyncio.run(run())
    except ReportNotFound as exc:
        raise click.ClickException(f"no stored report {exc}") from exc
    click.echo(json.dumps({"report_id": str(report_id), "counts": counts}))


@recon.command("bench")
@click.option("--lines", "lines", required=True, type=click.IntRange(min=1000), help="report lines to generate")
@click.option("--provider", default="momo", show_default=True, help="the report's dialect (momo, wave)")
@click.option(
    "--database-url",
    default=None,
    help="an EMPTY database to run in (migrated here); default: a fresh PostgreSQL database, dropped after",
)
@click.option(
    "--admin-url",
    default=None,
    help="where the fresh database is created [env KORA_TEST_POSTGRES_URL, else postgres@127.0.0.1:5432]",
)
@click.option("--seed", default=1, show_default=True, help="the synthetic report's random seed")
@click.option("--trace-memory", is_flag=True, help="also report tracemalloc's peak (slows the run down)")
@click.option(
    "--started-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="created when the timed batch starts (lets a script start a load beside it)",
)
def bench_command(
    lines: int,
    provider: str,
    database_url: str | None,
    admin_url: str | None,
    seed: int,
    trace_memory: bool,
    started_file: Path | None,
) -> None:
    """Time a nightly batch: a synthetic report of LINES lines (a known mix of discrepancies)
    imported, matched and persisted against Kora's side of the same day. Prints a JSON summary
    (seconds per phase, lines/s, memory, outcome counts checked against the injected mix) and
    fails when the outcomes are not what was injected."""
    from contextlib import nullcontext
    from datetime import datetime

    from kora.observability import configure_logging
    from kora.platform.db import create_engine
    from kora.reconciliation.bench import ADMIN_URL, fresh_postgres_database, run_bench
    from kora.reconciliation.migrations import upgrade

    configure_logging(level=os.environ.get("KORA_LOG_LEVEL", "WARNING"), json=True, service="kora-recon")
    admin = admin_url or os.environ.get("KORA_TEST_POSTGRES_URL", ADMIN_URL)
    with nullcontext(database_url) if database_url else fresh_postgres_database(admin) as url:
        upgrade(url)

        def mark(at: datetime) -> None:
            if started_file is not None:
                started_file.write_text(at.isoformat() + "\n")

        async def run() -> dict[str, object]:
            engine = create_engine(url, pool_size=2)
            try:
                result = await run_bench(
                    engine, lines, provider=provider, seed=seed, trace_memory=trace_memory, on_start=mark
                )
            finally:
                await engine.dispose()
            summary = result.summary()
            summary["database"] = engine.dialect.name
            return summary

        summary = asyncio.run(run())
    click.echo(json.dumps(summary, indent=2))
    if not summary["ok"]:
        raise click.ClickException("the outcomes are not the injected mix: " + "; ".join(summary["problems"]))  # type: ignore[arg-type]


def register(main: click.Group) -> None:
    main.add_command(recon)
