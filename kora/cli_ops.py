"""`kora ops`: controlled degradation from a terminal (the same controls as
/v1/admin/controls, on the database KORA_DATABASE_URL names; audited with actor `cli`).

    kora ops status                       what is paused or disabled, and how every route routes now
    kora ops pause cash-out --reason "..." [--incident INC-1] [--retry-after 300]
    kora ops resume cash-out
    kora ops provider disable momo --reason "..." [--incident INC-1]
    kora ops provider enable momo

The API processes apply a change within the controls' cache TTL (2 s). Exit 2 when the command
is refused (an unknown provider, a reason that quotes personal data).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from kora.operations import (
    DEFAULT_RETRY_AFTER_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    ControlChange,
    ControlError,
    ControlRequest,
    Operation,
    overview,
)

CLI_ACTOR = "cli"
OPERATIONS = click.Choice([o.value for o in Operation])


def register(main: click.Group) -> None:
    main.add_command(ops)


def _run(work: Any) -> Any:
    from kora.cli import _run_with_kora

    try:
        return _run_with_kora(work)
    except ControlError as exc:
        click.echo(f"{exc.code}: {exc}", err=True)
        sys.exit(2)


def _reason_options(command: Any) -> Any:
    command = click.option(
        "--retry-after",
        "retry_after",
        default=DEFAULT_RETRY_AFTER_SECONDS,
        show_default=True,
        type=click.IntRange(1, MAX_RETRY_AFTER_SECONDS),
        help="seconds refused clients are told to wait (Retry-After)",
    )(command)
    command = click.option("--incident", default=None, help="the incident reference, e.g. INC-2031")(command)
    return click.option(
        "--reason", required=True, help="why, for the audit trail and the next on-call (never personal data)"
    )(command)


def _echo_change(change: ControlChange, verb: str) -> None:
    state = "unchanged (already so)" if not change.changed else verb
    click.echo(f"{change.kind.value} {change.target}: {state}")
    if change.current is not None:
        click.echo(json.dumps(change.current.view(), indent=2))


@click.group()
def ops() -> None:
    """Controlled degradation: pause operations, take providers out of routing."""


@ops.command("status")
@click.option("--json", "as_json", is_flag=True, help="the same view as GET /v1/admin/controls")
def ops_status(as_json: bool) -> None:
    """What is paused or disabled, by whom and why, and how every route routes now. Exit 1
    when anything is paused or disabled (so a script can tell a degraded state)."""

    async def work(kora: Any) -> Any:
        snapshot = await kora.controls.refresh()
        return overview(snapshot, providers=kora.controls.providers, routes=kora.providers.routes())

    view = _run(work)
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        for row in view["operations"]:
            state = "PAUSED" if row["paused"] else "open"
            click.echo(f"operation {row['operation']:<17} {state}{_since(row) if row['paused'] else ''}")
        for row in view["providers"]:
            state = "DISABLED" if row["disabled"] else "enabled"
            click.echo(f"provider  {row['provider']:<17} {state}{_since(row) if row['disabled'] else ''}")
        for row in view["routes"]:
            effective = ", ".join(row["effective"]) or "NONE (requests get 503 provider_unavailable)"
            click.echo(f"route     {row['operation'] + '/' + row['currency']:<17} {effective}")
    degraded = any(r["paused"] for r in view["operations"]) or any(r["disabled"] for r in view["providers"])
    sys.exit(1 if degraded else 0)


def _since(row: dict[str, Any]) -> str:
    incident = f" [{row['incident']}]" if row.get("incident") else ""
    return f"  since {row['set_at']} by {row['set_by']}{incident}: {row['reason']}"


@ops.command("pause")
@click.argument("operation", type=OPERATIONS)
@_reason_options
def ops_pause(operation: str, reason: str, incident: str | None, retry_after: int) -> None:
    """Pause new requests of OPERATION (503 operation_paused, nothing written); payments
    already under way are still resolved."""
    request = ControlRequest(reason=reason, actor=CLI_ACTOR, incident=incident, retry_after_seconds=retry_after)

    async def work(kora: Any) -> ControlChange:
        change: ControlChange = await kora.controls.pause(operation, request)
        return change

    _echo_change(_run(work), "PAUSED")


@ops.command("resume")
@click.argument("operation", type=OPERATIONS)
def ops_resume(operation: str) -> None:
    """Let OPERATION go ahead again."""

    async def work(kora: Any) -> ControlChange:
        change: ControlChange = await kora.controls.resume(operation, actor=CLI_ACTOR)
        return change

    _echo_change(_run(work), "resumed")


@ops.group("provider")
def ops_provider() -> None:
    """Take a provider out of routing, or put it back."""


@ops_provider.command("disable")
@click.argument("provider")
@_reason_options
def ops_provider_disable(provider: str, reason: str, incident: str | None, retry_after: int) -> None:
    """Take PROVIDER out of routing: new cash-ins/outs go to the next provider of their route
    (503 provider_unavailable when none is left). Its pending payments are still resolved."""
    request = ControlRequest(reason=reason, actor=CLI_ACTOR, incident=incident, retry_after_seconds=retry_after)

    async def work(kora: Any) -> ControlChange:
        change: ControlChange = await kora.controls.disable_provider(provider, request)
        return change

    _echo_change(_run(work), "DISABLED")


@ops_provider.command("enable")
@click.argument("provider")
def ops_provider_enable(provider: str) -> None:
    """Put PROVIDER back in routing."""

    async def work(kora: Any) -> ControlChange:
        change: ControlChange = await kora.controls.enable_provider(provider, actor=CLI_ACTOR)
        return change

    _echo_change(_run(work), "enabled")
