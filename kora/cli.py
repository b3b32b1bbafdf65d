"""The `kora` command."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
from typing import Any

import click

from kora.platform.settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


@click.group()
def main() -> None:
    """Kora: wallet core for mobile-money neobanks."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="uvicorn worker processes")
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="bring the schema up to date first")
def serve(host: str, port: int, workers: int, migrate: bool) -> None:
    """Run the payment API."""
    import uvicorn
    from loguru import logger

    from kora.observability import configure_logging

    settings = _settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    if settings.generated_secrets:
        logger.warning(
            "development secrets generated locally (never use them in production)",
            generated=", ".join(name.removeprefix("KORA_") for name in settings.generated_secrets),
        )
    if migrate:
        from kora.platform.migrate import upgrade

        upgrade(settings.database_url)
        logger.info("database schema is up to date")
    uvicorn.run(
        "kora.http.asgi:build",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--zero-latency", is_flag=True, help="test settings: no latency, short holds")
def simulator(host: str, port: int, config_path: str | None, zero_latency: bool) -> None:
    """Run the provider simulator (MoMo-like, Wave-like, card acquirer) as its own HTTP service."""
    from kora.simulator.__main__ import main as run

    args = ["--host", host, "--port", str(port)]
    if config_path:
        args += ["--config", config_path]
    if zero_latency:
        args.append("--zero-latency")
    run(args)


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    from kora.platform.migrate import upgrade

    upgrade(_settings().database_url, revision)
    click.echo(f"upgraded to {revision}")


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (`base` for an empty schema)."""
    from kora.platform.migrate import downgrade

    downgrade(_settings().database_url, revision)
    click.echo(f"downgraded to {revision}")


def _run_with_kora(work: Any) -> Any:
    from kora.bootstrap import Kora

    async def runner() -> Any:
        kora = Kora(_settings())
        try:
            return await work(kora)
        finally:
            await kora.aclose()

    return asyncio.run(runner())


@main.group()
def ledger() -> None:
    """Ledger operations."""


@ledger.command("verify")
def ledger_verify() -> None:
    """Check every ledger invariant; exit 1 on any violation."""

    async def work(kora: Any) -> Any:
        return await kora.verify_ledger()

    report = _run_with_kora(work)
    click.echo(json.dumps(report.as_dict(), indent=2))
    sys.exit(0 if report.ok else 1)


@ledger.command("rebuild-balances")
@click.option("--account", "account_id", default=None, help="only this account id")
def ledger_rebuild(account_id: str | None) -> None:
    """Recompute every balance from the entries' amounts alone and compare it with the
    recorded `balance_after`; exit 1 if any differs."""
    from kora.ledger.adapters.rebuild import rebuild_balances

    async def work(kora: Any) -> Any:
        async with kora.engine.connect() as conn:
            return await rebuild_balances(conn, account_id=account_id)

    rows = _run_with_kora(work)
    mismatches = [r for r in rows if not r["matches"]]
    click.echo(json.dumps({"accounts": len(rows), "mismatches": mismatches}, indent=2))
    sys.exit(1 if mismatches else 0)


@main.group()
def payments() -> None:
    """Payment operations."""


@payments.command("sweep")
def payments_sweep() -> None:
    """Resolve pending provider payments now: status query for each, late answers recorded,
    the undecided past KORA_PENDING_MAX_AGE_SECONDS ended FAILED (the API process also does this
    every KORA_SWEEP_INTERVAL_SECONDS)."""

    async def work(kora: Any) -> Any:
        return await kora.sweep_pending()

    click.echo(json.dumps(_run_with_kora(work), indent=2))


@payments.command("settle")
@click.option("--provider", required=True, help="the provider whose settlement arrived")
@click.option("--currency", default="XOF", show_default=True)
@click.option(
    "--through",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="settle every payment captured on or before this UTC day (YYYY-MM-DD), which must have ended "
    "(yesterday or earlier; today is refused, exit 2)",
)
@click.option(
    "--payment-id",
    "payment_ids",
    multiple=True,
    type=click.UUID,
    help="settle this payment, as the provider's report names it (repeatable; any captured payment)",
)
@click.option("--reference", default=None, help="the settlement report or bank statement reference")
def payments_settle(
    provider: str, currency: str, through: Any, payment_ids: tuple[Any, ...], reference: str | None
) -> None:
    """Settle a provider's captured payments (clearing → settlement bank, CAPTURED → SETTLED),
    as its settlement report says: by the ids it names (exact), or by a UTC day that has ended
    (by Kora's capture time). Safe to run again. Exit 1 if any payment was rejected, 2 if the
    request was refused."""
    day = through.date() if through is not None else None
    ref = reference or f"{provider}-report-{day or 'manual'}"

    async def work(kora: Any) -> Any:
        result = await kora.payments.settle(
            provider,
            currency,
            payment_ids=list(payment_ids) or None,
            through=day,
            actor="ops",
            reference=ref,
        )
        return result.body

    from kora.payments import PaymentError

    try:
        body = _run_with_kora(work)
    except PaymentError as exc:
        click.echo(f"{exc.code}: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(body, indent=2))
    sys.exit(1 if body["rejected"] else 0)


@main.group()
def audit() -> None:
    """Audit trail operations."""


@audit.command("verify")
def audit_verify() -> None:
    """Verify the audit hash chains; exit 1 and name the first broken link if any."""

    async def work(kora: Any) -> Any:
        return await kora.verify_audit()

    report = _run_with_kora(work)
    click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    sys.exit(0 if report.ok else 1)


@main.group()
def admin() -> None:
    """Administration."""


@admin.command("create")
@click.option("--phone-number", required=True, help="E.164, e.g. +2250700000001")
@click.password_option("--password", help="read from the prompt if omitted")
def admin_create(phone_number: str, password: str) -> None:
    """Create an admin user (admins are never created through the API)."""

    async def work(kora: Any) -> Any:
        return await kora.identity.create_admin(phone_number, password)

    result = _run_with_kora(work)
    click.echo(f"admin created: user_id={getattr(result, 'user_id', result)}")


@admin.command("create-staff")
@click.option("--phone-number", required=True, help="E.164, e.g. +2250700000001")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["support", "admin", "recon_reviewer", "recon_approver", "risk_analyst", "leadership"]),
    help=(
        "recon_reviewer proposes reconciliation corrections; recon_approver approves another's; "
        "risk_analyst decides payments held for risk review; leadership reads the KPIs"
    ),
)
@click.password_option("--password", help="read from the prompt if omitted")
def admin_create_staff(phone_number: str, role: str, password: str) -> None:
    """Create a staff account (no wallet; audited). Staff are never created through the API."""
    from kora.identity import Role

    async def work(kora: Any) -> Any:
        return await kora.identity.create_staff(phone_number, password, Role(role))

    click.echo(f"{role} created: user_id={_run_with_kora(work)}")


@admin.command("grant-role")
@click.option("--phone-number", required=True, help="the user's E.164 number, e.g. +2250700000001")
@click.argument(
    "role", type=click.Choice(["merchant", "recon_reviewer", "recon_approver", "risk_analyst", "leadership"])
)
def admin_grant_role(phone_number: str, role: str) -> None:
    """Grant a customer the merchant role (and open its merchant account), or a staff member a
    reconciliation, risk or leadership role. Audited."""
    from kora.identity import Role, UserNotFound

    async def work(kora: Any) -> Any:
        identity = kora.identity
        lookup = identity.resolve_user_by_phone if role == "merchant" else identity.resolve_staff_by_phone
        user_id = await lookup(phone_number)
        if user_id is None:
            return None
        try:
            granted = await kora.identity.grant_role(user_id, Role(role), actor="cli")
        except UserNotFound:
            return None
        merchant_id = await kora.payments.open_merchant_account(user_id) if role == "merchant" else None
        return user_id, granted, merchant_id

    result = _run_with_kora(work)
    if result is None:
        wanted = "customer" if role == "merchant" else "staff member"
        click.echo(f"no {wanted} with this phone number", err=True)
        sys.exit(1)
    user_id, granted, merchant_id = result
    suffix = f" merchant_id={merchant_id}" if merchant_id is not None else ""
    click.echo(f"{role} role {'granted' if granted else 'already held'}: user_id={user_id}{suffix}")


@main.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True)
@click.option("--concurrency", default=32, show_default=True, type=int)
@click.option("--duration", default=20.0, show_default=True, type=float, help="seconds of load")
@click.option("--users", default=200, show_default=True, type=int, help="wallets taking part")
@click.option("--verify/--no-verify", default=True, show_default=True, help="run `ledger verify` after")
@click.option("--scenario", type=click.Choice(["p2p", "mixed"]), default="p2p", show_default=True)
@click.option(
    "--mix",
    default="p2p=40,merchant=20,cash_in=20,cash_out=20",
    show_default=True,
    help="mixed: workers per operation, by weight",
)
@click.option("--retry-share", default=0.07, show_default=True, type=click.FloatRange(0, 1), help="mixed: re-sent")
@click.option("--providers", default="", help="mixed: cash-in/out providers, comma-separated (default: server routes)")
@click.option("--funding-provider", default=None, help="mixed: provider of the setup cash-ins (default: server's)")
@click.option("--merchants", default=3, show_default=True, type=int, help="mixed: merchants to pay")
@click.option("--admin-phone", envvar="KORA_BENCH_ADMIN_PHONE", default=None, help="mixed: grants the merchant role")
@click.option("--admin-password", envvar="KORA_BENCH_ADMIN_PASSWORD", default=None)
def bench(
    url: str,
    concurrency: int,
    duration: float,
    users: int,
    verify: bool,
    scenario: str,
    mix: str,
    retry_share: float,
    providers: str,
    funding_provider: str | None,
    merchants: int,
    admin_phone: str | None,
    admin_password: str | None,
) -> None:
    """Drive a load against a running server and print throughput and latency percentiles: P2P
    transfers, or (--scenario mixed) P2P, merchant payments, cash-ins and cash-outs with retries."""
    if scenario == "mixed":
        from kora.bench_mixed import run_mixed_bench

        mixed = asyncio.run(
            run_mixed_bench(
                url=url,
                concurrency=concurrency,
                duration=duration,
                users=users,
                mix=mix,
                retry_share=retry_share,
                providers=[p.strip() for p in providers.split(",") if p.strip()] or None,
                funding_provider=funding_provider,
                merchants=merchants,
                admin=(admin_phone, admin_password) if admin_phone and admin_password else None,
            )
        )
        click.echo(mixed.render())
        errors = mixed.error_count
    else:
        from kora.bench import run_bench

        result = asyncio.run(run_bench(url=url, concurrency=concurrency, duration=duration, users=users))
        click.echo(result.render())
        errors = result.errors
    if verify:
        click.echo("ledger verification (this process reads KORA_DATABASE_URL):")
        ledger_verify.main(args=[], standalone_mode=False)
    sys.exit(0 if errors == 0 else 1)


@main.group()
def slo() -> None:
    """SLOs as code: Prometheus rules generated from the Sloth specs."""


@slo.command("generate")
@click.option(
    "--slo-dir",
    default="slo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    help="folder of Sloth prometheus/v1 specs",
)
@click.option(
    "--out",
    "out_dir",
    default="alerts/slo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    help="folder of the generated <service>.rules.yml files",
)
@click.option("--check", is_flag=True, help="write nothing; exit 1 with a diff when the committed files differ")
def slo_generate(slo_dir: pathlib.Path, out_dir: pathlib.Path, check: bool) -> None:
    """Write the SLI recording rules, SLO metadata and multi-window multi-burn-rate alerts of
    every spec in --slo-dir into --out (deterministic: the same specs give the same bytes)."""
    from kora.slo import SpecError, drift, planned_files, write

    try:
        planned = planned_files(slo_dir)
    except SpecError as exc:
        click.echo(f"invalid SLO spec: {exc}", err=True)
        sys.exit(2)
    if not check:
        touched = write(planned, out_dir)
        click.echo(f"{len(planned)} rules file(s) in {out_dir}; changed: {', '.join(touched) or 'none'}")
        return
    found = drift(planned, out_dir)
    if found.clean:
        click.echo(f"{out_dir} is up to date with {slo_dir}")
        return
    click.echo(found.diff, nl=False)
    for name in found.stale:
        click.echo(f"stale: {out_dir / name} (no spec generates it)")
    click.echo(f"{out_dir} is out of date: run `kora slo generate`", err=True)
    sys.exit(1)


def _register_event_commands() -> None:
    from kora.cli_events import register

    register(main)


_register_event_commands()


def _register_recon_commands() -> None:
    from kora.reconciliation.cli import register

    register(main)


_register_recon_commands()


def _register_risk_commands() -> None:
    from kora.risk.cli import register

    register(main)


_register_risk_commands()


def _register_ops_commands() -> None:
    from kora.cli_ops import register

    register(main)


_register_ops_commands()
