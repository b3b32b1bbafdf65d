"""`kora recon cases ...` and `kora recon audit verify`: the review queue from a shell.

A person's command authenticates exactly as over HTTP: with a core access token (``--token``
or KORA_RECON_TOKEN), verified with the core's public keys (KORA_RECON_USER_TOKEN_KEYS or
KORA_RECON_USER_TOKEN_JWKS_URL, as `kora recon serve`); the acting person is the token's
``sub`` and their roles its ``roles``, so one shell user cannot propose as one person and
approve as another. The roles and maker-checker are then checked by the service, as over HTTP.
``cases work`` (the automatic rules) and ``audit verify`` act for no person and need no token.
Output is JSON."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from kora.reconciliation.composition import Review
    from kora.reconciliation.service.case_types import Principal
    from kora.reconciliation.service.cases import CaseService

T = TypeVar("T")


def _run(token: str, work: Callable[[CaseService, Principal], Awaitable[T]]) -> T:
    """Run ``work`` for the person the core access token ``token`` names."""

    async def as_person(review: Review) -> T:
        principal = await _authenticate(token)
        return await work(review.cases, principal)

    return _run_review(as_person)


async def _authenticate(token: str) -> Principal:
    """The token's person, verified as the HTTP API verifies it; a ClickException otherwise."""
    from kora.kernel import SystemClock
    from kora.reconciliation.http.security import (
        InvalidUserToken,
        KeySource,
        RemoteJwks,
        StaticKeys,
        UserTokenVerifier,
        parse_jwks,
    )
    from kora.reconciliation.http.settings import JWKS_URL_SETTING, KEYS_SETTING, ReconApiSettings
    from kora.reconciliation.service.case_types import Actor

    settings = ReconApiSettings.from_env()
    keys: KeySource
    jwks: RemoteJwks | None = None
    if settings.core_keys:
        keys = StaticKeys(parse_jwks(settings.core_keys))
    elif settings.core_jwks_url:
        keys = jwks = RemoteJwks(settings.core_jwks_url, ttl_seconds=settings.core_jwks_ttl_seconds)
    else:
        raise click.ClickException(f"no core keys to verify the token: set {KEYS_SETTING} or {JWKS_URL_SETTING}")
    verifier = UserTokenVerifier(
        keys, issuer=settings.core_issuer, audience=settings.core_audience, clock=SystemClock()
    )
    try:
        principal = await verifier.verify(token.strip())
    except InvalidUserToken as exc:
        raise click.ClickException(f"invalid_token: the core access token does not verify ({exc.reason})") from None
    finally:
        if jwks is not None:
            await jwks.aclose()
    return Actor(principal.user_id, principal.roles)


def _run_review(work: Callable[[Review], Awaitable[T]]) -> T:
    """Run ``work`` with the review queue wired as in every recon process: the core through its
    service API (KORA_RECON_CORE_URL, KORA_RECON_SERVICE_KEY), confirmed mismatches to the
    service's outbox (KORA_RECON_EVENT_SIGNING_KEYS)."""
    from prometheus_client import CollectorRegistry

    from kora.kernel import SystemClock
    from kora.observability import configure_logging, correlation_scope
    from kora.platform.db import create_engine
    from kora.platform.settings import ConfigurationError
    from kora.reconciliation.adapters.core_client import CoreError
    from kora.reconciliation.composition import build_review
    from kora.reconciliation.domain.cases import CaseError
    from kora.reconciliation.service.review_settings import ReviewSettings
    from kora.reconciliation.service.settings import ReconSettings

    configure_logging(level=os.environ.get("KORA_LOG_LEVEL", "INFO"), json=True, service="kora-recon")

    async def run() -> T:
        settings = ReconSettings.from_env()
        engine = create_engine(settings.database_url, pool_size=2)
        try:
            review = build_review(
                engine, settings, clock=SystemClock(), registry=CollectorRegistry(), review=ReviewSettings.from_env()
            )
            try:
                with correlation_scope():
                    return await work(review)
            finally:
                await review.aclose()
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except CaseError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from exc
    except CoreError as exc:
        raise click.ClickException(f"the core refused or is unreachable: {exc}") from exc
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


_token = click.option(
    "--token",
    envvar="KORA_RECON_TOKEN",
    required=True,
    help="your core access token (or KORA_RECON_TOKEN): the acting person and roles are its sub and roles",
)


def _echo(value: Any) -> None:
    click.echo(json.dumps(value, default=str))


@click.group("cases")
def cases() -> None:
    """The review queue: cases opened by match runs, proposals and maker-checker decisions."""


@cases.command("list")
@_token
@click.option("--status", "statuses", multiple=True, help="only cases in this status (repeatable)")
@click.option("--queue", is_flag=True, help="only cases waiting for people")
@click.option("--provider", default=None)
@click.option("--outcome", default=None, help="MISMATCH, MISSING_INTERNAL, MISSING_PROVIDER")
@click.option("--report-id", type=click.UUID, default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
def list_command(
    token: str,
    statuses: tuple[str, ...],
    queue: bool,
    provider: str | None,
    outcome: str | None,
    report_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> None:
    """Cases, oldest first, as JSON."""
    page = _run(
        token,
        lambda s, who: s.list(
            who,
            statuses=frozenset(statuses),
            queue=queue,
            provider=provider,
            outcome=outcome,
            report_id=report_id,
            limit=limit,
            offset=offset,
        ),
    )
    _echo({"total": page.total, "limit": page.limit, "offset": page.offset, "cases": [c.as_dict() for c in page.cases]})


@cases.command("show")
@_token
@click.argument("case_id", type=click.UUID)
def show_command(token: str, case_id: uuid.UUID) -> None:
    """A case with its evidence, comments and history."""
    detail = _run(token, lambda s, who: s.show(who, case_id))
    _echo(
        {
            "case": detail.case.as_dict(),
            "evidence": detail.evidence,
            "comments": detail.comments,
            "history": detail.history,
        }
    )


@cases.command("take")
@_token
@click.argument("case_id", type=click.UUID)
def take_command(token: str, case_id: uuid.UUID) -> None:
    """Start investigating an open case (reviewer)."""
    _echo(_run(token, lambda s, who: s.take(who, case_id)).as_dict())


@cases.command("comment")
@_token
@click.argument("case_id", type=click.UUID)
@click.option("--note", required=True, help="no phone or account numbers")
def comment_command(token: str, case_id: uuid.UUID, note: str) -> None:
    """Add a note to a case (reviewer or approver)."""
    _echo(_run(token, lambda s, who: s.comment(who, case_id, note)).as_dict())


@cases.command("propose")
@_token
@click.argument("case_id", type=click.UUID)
@click.option(
    "--kind",
    required=True,
    type=click.Choice(
        ["confirm_mismatch", "write_off", "manual_credit", "manual_debit", "accept_provider", "no_action"]
    ),
)
@click.option("--note", required=True, help="why (no phone or account numbers)")
@click.option(
    "--amount", type=int, default=None, help="minor units; required for write_off, manual_credit, manual_debit"
)
@click.option("--currency", default=None, help="ISO 4217 (default: the case's)")
def propose_command(
    token: str,
    case_id: uuid.UUID,
    kind: str,
    note: str,
    amount: int | None,
    currency: str | None,
) -> None:
    """Propose how to settle a case (reviewer); a different approver decides."""
    from kora.reconciliation.domain.cases import Proposal, ProposalKind

    proposal = Proposal(ProposalKind(kind), note, amount, currency)
    _echo(_run(token, lambda s, who: s.propose(who, case_id, proposal)).as_dict())


@cases.command("approve")
@_token
@click.argument("case_id", type=click.UUID)
def approve_command(token: str, case_id: uuid.UUID) -> None:
    """Approve a case's proposal (approver, not its proposer); its effect follows."""
    _echo(_run(token, lambda s, who: s.approve(who, case_id)).as_dict())


@cases.command("reject")
@_token
@click.argument("case_id", type=click.UUID)
@click.option("--note", required=True, help="why (no phone or account numbers)")
def reject_command(token: str, case_id: uuid.UUID, note: str) -> None:
    """Reject a case's proposal (approver, not its proposer)."""
    _echo(_run(token, lambda s, who: s.reject(who, case_id, note)).as_dict())


@cases.command("retry-posting")
@_token
@click.argument("case_id", type=click.UUID)
def retry_command(token: str, case_id: uuid.UUID) -> None:
    """Post an approved correction whose posting failed (approver)."""
    _echo(_run(token, lambda s, who: s.retry_posting(who, case_id)).as_dict())


@cases.command("work")
@click.option("--limit", type=int, default=100, show_default=True)
def work_command(limit: int) -> None:
    """The automatic rules, once (run it on a schedule): ask the core about late successes,
    escalate what is still unresolved after KORA_RECON_ESCALATE_AFTER_HOURS, and retry the
    postings of approved corrections. Prints the counts as JSON."""
    _echo(_run_review(lambda review: review.work_once(limit=limit)))


@click.group("audit")
def audit() -> None:
    """The review audit trail (a keyed hash chain)."""


@audit.command("verify")
def verify_command() -> None:
    """Recompute the review audit chain; exits 1 when a record was changed, inserted or removed."""
    from kora.platform.db import create_engine
    from kora.reconciliation.adapters.case_store import SqlAuditTrail
    from kora.reconciliation.domain.audit_chain import ChainReport
    from kora.reconciliation.service.review_settings import ReviewSettings
    from kora.reconciliation.service.settings import ReconSettings

    settings = ReconSettings.from_env()
    key = ReviewSettings.from_env().audit_key

    async def run() -> ChainReport:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            return await SqlAuditTrail(key).verify(engine)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    _echo(
        {
            "ok": report.ok,
            "records": report.records,
            "head": {"position": report.head_position, "hash": report.head_hash},
            "broken": [{"position": p, "problem": what} for p, what in report.broken],
        }
    )
    if not report.ok:
        raise SystemExit(1)


def attach(recon: click.Group) -> None:
    recon.add_command(cases)
    recon.add_command(audit)
