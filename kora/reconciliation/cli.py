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


def register(main: click.Group) -> None:
    main.add_command(recon)
