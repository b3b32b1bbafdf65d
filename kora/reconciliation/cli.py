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


@recon.command("service-key")
def service_key_command() -> None:
    """Print the KORA_SERVICE_IDENTITIES entry (and the JWK) for this service's key
    (KORA_RECON_SERVICE_KEY, or the development key): public material only, never the private
    key. Paste the entry into the core's KORA_SERVICE_IDENTITIES list (ADR 0023)."""
    from kora.platform.settings import ConfigurationError
    from kora.reconciliation.adapters.service_token import ServiceKey
    from kora.reconciliation.service.settings import ReconSettings

    settings = ReconSettings.from_env()
    try:
        key = ServiceKey.from_json(settings.require_service_key())
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    entry = {
        "service": settings.service_name,
        "kid": key.kid,
        "public_key": key.public_key(),
        "scopes": ["payments:read", "payments:query", "ledger:correct"],
    }
    click.echo(json.dumps({"service_identity": entry, "jwk": key.jwk()}, indent=2))
    if settings.generated_service_key:
        click.echo("(a development key, generated into KORA_DEV_SECRETS_FILE: never use it in production)", err=True)


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
    from kora.reconciliation.adapters.case_store import SqlAuditTrail
    from kora.reconciliation.adapters.crypto import AesGcmReportCipher
    from kora.reconciliation.adapters.sql import SqlReportStore
    from kora.reconciliation.domain.dialect import DialectError
    from kora.reconciliation.domain.parsing import ReportError
    from kora.reconciliation.service.importing import ReportImports, ReportTooLarge
    from kora.reconciliation.service.report_audit import audit_report_action
    from kora.reconciliation.service.review_settings import ReviewSettings
    from kora.reconciliation.service.settings import ReconSettings

    settings = ReconSettings.from_env()
    configure_logging(level=os.environ.get("KORA_LOG_LEVEL", "INFO"), json=True, service="kora-recon")
    report_day = day.date() if isinstance(day, datetime) else None
    data = file.read_bytes()

    async def run() -> dict[str, object]:
        engine = create_engine(settings.database_url, pool_size=2)
        clock = SystemClock()
        try:
            imports = ReportImports(SqlReportStore(engine), AesGcmReportCipher.from_setting(settings.report_key), clock)
            result = await imports.import_report(provider, data, filename=file.name, actor=actor, report_day=report_day)
            await audit_report_action(
                engine,
                SqlAuditTrail(ReviewSettings.from_env().audit_key),
                clock,
                action="report.import",
                actor=actor,
                role="operator",  # a shell on the service's host: who it is is --actor
                report_id=result.report_id,
                details={"provider": provider, "lines": result.lines, "duplicate": result.duplicate},
            )
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
@click.option(
    "--confirm/--no-confirm",
    default=True,
    show_default=True,
    help="confirm the matched payments still captured settled (an outcome event the worker's relay publishes)",
)
def match_command(report_id: object, confirm: bool) -> None:
    """Match a stored report against Kora's payments of its provider, as of now; stores the
    results in place of the report's previous run and prints the count of each outcome as JSON.
    As the worker's schedule does, it opens, updates or closes the review cases and confirms the
    matched captured payments settled (in the run's transaction); re-running is harmless, the
    core settles each payment once."""
    import uuid

    from prometheus_client import CollectorRegistry

    from kora.kernel import SystemClock
    from kora.observability import configure_logging
    from kora.platform.db import create_engine
    from kora.platform.settings import ConfigurationError
    from kora.reconciliation.composition import build_review
    from kora.reconciliation.metrics import ReconMetrics
    from kora.reconciliation.schedules import load_rules
    from kora.reconciliation.service.importing import ReportNotFound
    from kora.reconciliation.service.match_run import MatchHook
    from kora.reconciliation.service.observed import match_observed
    from kora.reconciliation.service.report_audit import match_audit_hook
    from kora.reconciliation.service.settings import ReconSettings

    assert isinstance(report_id, uuid.UUID)
    settings = ReconSettings.from_env()
    configure_logging(level=os.environ.get("KORA_LOG_LEVEL", "INFO"), json=True, service="kora-recon")
    clock = SystemClock()

    async def run() -> dict[str, int]:
        engine = create_engine(settings.database_url, pool_size=2)
        registry = CollectorRegistry()
        metrics = ReconMetrics(registry)
        review = build_review(engine, settings, clock=clock, registry=registry, metrics=metrics)
        hooks: list[MatchHook] = review.match_hooks() if confirm else [review.opener.open_cases]
        hooks.append(match_audit_hook(review.audit, clock, actor="operator:cli", role="operator"))
        try:
            return await match_observed(
                engine, metrics, report_id, rules=load_rules, as_of=clock.now(), clock=clock, hooks=hooks
            )
        finally:
            await review.aclose()
            await engine.dispose()

    try:
        counts = asyncio.run(run())
    except ReportNotFound as exc:
        raise click.ClickException(f"no stored report {exc}") from exc
    except (ConfigurationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"report_id": str(report_id), "counts": counts}))


@recon.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=int)
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="bring the schema up to date first")
def serve_command(host: str, port: int, migrate: bool) -> None:
    """Run the reconciliation API (reports, results, summary; see docs/operations/reconciliation-api.md)."""
    import uvicorn
    from loguru import logger

    from kora.observability import configure_logging
    from kora.reconciliation.http.settings import ReconApiSettings

    settings = ReconApiSettings.from_env()
    configure_logging(level=settings.log_level, json=settings.log_json, service="kora-recon")
    if settings.recon.generated_key:
        logger.warning("development report key generated locally (never use it in production)")
    if migrate:
        from kora.reconciliation.migrations import upgrade

        upgrade(settings.recon.database_url)
        logger.info("reconciliation database schema is up to date")
    uvicorn.run(
        "kora.reconciliation.http.asgi:build",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


@recon.command("worker")
@click.option("--metrics-port", type=int, default=None, help="serve /metrics on this port")
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="address of /metrics (0.0.0.0 in a container)"
)
def worker_command(metrics_port: int | None, metrics_host: str) -> None:
    """Run the `recon` consumer, the outbox relay and the match schedule until SIGTERM."""
    import signal

    from kora.observability import TelemetrySettings, configure_telemetry
    from kora.platform.settings import ConfigurationError
    from kora.reconciliation.service.settings import ReconSettings
    from kora.reconciliation.worker import ReconWorker

    settings = ReconSettings.from_env()
    configure_telemetry(TelemetrySettings.from_env("kora-recon-worker"))

    async def run() -> None:
        worker = ReconWorker(settings)
        if metrics_port:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr=metrics_host, registry=worker.registry)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await worker.run(stop)
        finally:
            await worker.aclose()

    try:
        asyncio.run(run())
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


@recon.command("replay")
@click.option("--from-seq", type=int, default=None, help="from this stream sequence")
@click.option("--since", default=None, help="from this time (ISO 8601, UTC if no offset)")
@click.option("--actor", required=True, help="who asks (logged)")
def replay_command(from_seq: int | None, since: str | None, actor: str) -> None:
    """Re-deliver the core's payment events to the `recon` consumer (its own database); what it
    already applied is not applied again. Prints the count of each outcome."""
    from datetime import UTC, datetime

    from kora.observability import configure_logging
    from kora.reconciliation.service.settings import ReconSettings
    from kora.reconciliation.worker import ReconWorker

    if (from_seq is None) == (since is None):
        raise click.UsageError("give exactly one of --from-seq and --since")
    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError as exc:
            raise click.BadParameter(f"not an ISO 8601 time: {since!r}") from exc
        start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    settings = ReconSettings.from_env()
    configure_logging(level=os.environ.get("KORA_LOG_LEVEL", "INFO"), json=True, service="kora-recon")

    async def run() -> dict[str, int]:
        worker = ReconWorker(settings)
        try:
            return await worker.replay(from_seq=from_seq, since=start, actor=actor)
        finally:
            await worker.aclose()

    click.echo(json.dumps(asyncio.run(run())))


@recon.command("event-keys")
def event_keys_command() -> None:
    """Print the service's public event keys as KORA_EVENT_VERIFY_KEYS entries for the core
    (bound to producer kora-reconciliation): the core's `settlement` consumer trusts only these."""
    from kora.events.domain import RECONCILIATION_PRODUCER
    from kora.events.signing import load_signing_keys, public_key_pem
    from kora.platform.settings import ConfigurationError
    from kora.reconciliation.service.settings import ReconSettings

    try:
        _, keys = load_signing_keys(ReconSettings.from_env().require_event_keys())
    except (ConfigurationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    entries = [
        {"kid": kid, "public_key_pem": public_key_pem(key), "producer": RECONCILIATION_PRODUCER}
        for kid, key in keys.items()
    ]
    click.echo(json.dumps(entries))


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
    from kora.reconciliation.cli_cases import attach  # the review queue's commands (cases, audit)

    attach(recon)
    main.add_command(recon)
