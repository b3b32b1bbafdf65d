"""Imports and match runs with their traces and metrics: a thin layer over ReportImports and
run_match, used by the API and reusable by the worker, so both are observed the same way.

Spans carry the provider and counts only (never a line, a file name or an actor); the
duration histograms take the span's trace id as their exemplar.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from time import perf_counter

import sqlalchemy as sa
from loguru import logger
from opentelemetry.trace import Status, StatusCode
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.kernel import Clock
from kora.observability import get_tracer
from kora.reconciliation.adapters.report_queries import by_outcome_reason, provider_risk
from kora.reconciliation.adapters.tables import recon_quarantine
from kora.reconciliation.domain.rules import MatchRules
from kora.reconciliation.metrics import ReconMetrics
from kora.reconciliation.service.importing import ImportResult, ReportImports, ReportNotFound
from kora.reconciliation.service.match_run import MatchHook, MatchRun, RuleBook, run_match

_TRACER = "kora.reconciliation"


async def import_observed(
    imports: ReportImports,
    engine: AsyncEngine,
    metrics: ReconMetrics,
    provider: str,
    data: bytes,
    *,
    filename: str,
    actor: str,
    report_day: date | None,
) -> ImportResult:
    """ReportImports.import_report in a ``recon.import`` span, timed and counted (imported,
    duplicate or rejected), its quarantined lines counted by reason. Raises what it raises."""
    with get_tracer(_TRACER).start_as_current_span(
        "recon.import", attributes={"recon.provider": provider, "recon.bytes": len(data)}
    ) as span:
        started = perf_counter()
        try:
            result = await imports.import_report(provider, data, filename=filename, actor=actor, report_day=report_day)
        except Exception as exc:
            metrics.report_imported(provider, result="rejected")
            span.set_attribute("recon.rejected", type(exc).__name__)
            raise
        seconds = perf_counter() - started
        span.set_attributes(
            {"recon.lines": result.lines, "recon.quarantined": result.quarantined, "recon.duplicate": result.duplicate}
        )
        metrics.report_imported(provider, result="duplicate" if result.duplicate else "imported", seconds=seconds)
        if result.quarantined and not result.duplicate:
            metrics.lines_quarantined(provider, await _quarantine_reasons(engine, result.report_id))
    return result


async def match_observed(
    engine: AsyncEngine,
    metrics: ReconMetrics,
    report_id: uuid.UUID,
    *,
    rules: MatchRules | RuleBook,
    as_of: datetime,
    clock: Clock | None = None,
    hooks: Sequence[MatchHook] = (),
) -> dict[str, int]:
    """run_match in a ``recon.match`` span, timed; once committed, its results are counted by
    provider, outcome and reason and the provider's mismatch rate and amount at risk gauges
    are refreshed. Returns run_match's counts; raises what it raises."""
    runs: list[MatchRun] = []

    async def keep(_conn: AsyncConnection, run: MatchRun) -> None:
        runs.append(run)

    with get_tracer(_TRACER).start_as_current_span(
        "recon.match", attributes={"recon.report_id": str(report_id)}
    ) as span:
        started = perf_counter()
        try:
            counts = await run_match(engine, report_id, rules=rules, as_of=as_of, clock=clock, hooks=[*hooks, keep])
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            if not isinstance(exc, ReportNotFound):  # a wrong id is the caller's, not a failed run
                metrics.match_failed()
            raise
        seconds = perf_counter() - started
        (run,) = runs
        span.set_attribute("recon.provider", run.provider)
        for outcome, count in counts.items():
            span.set_attribute(f"recon.outcome.{outcome.lower()}", count)
        metrics.match_run(
            run.provider,
            by_outcome_reason([(r.outcome.value, None if r.reason is None else r.reason.value) for r in run.results]),
            seconds,
        )
    await refresh_risk(engine, metrics, run.provider)
    return counts


async def refresh_risk(engine: AsyncEngine, metrics: ReconMetrics, provider: str) -> None:
    """Set the provider's mismatch rate and amount at risk gauges from the stored results.
    A failure is logged, never raised: the gauges are refreshed again on the next run or read."""
    try:
        async with engine.connect() as conn:
            risk = await provider_risk(conn, provider)
    except sa.exc.SQLAlchemyError as exc:
        logger.warning("recon risk gauges not refreshed", provider=provider, error=type(exc).__name__)
        return
    metrics.set_risk(provider, mismatch_rate=risk.mismatch_rate, amount_at_risk=risk.amount_at_risk)


async def _quarantine_reasons(engine: AsyncEngine, report_id: uuid.UUID) -> dict[str, int]:
    q = recon_quarantine
    query = sa.select(q.c.reason, sa.func.count()).where(q.c.report_id == report_id).group_by(q.c.reason)
    async with engine.connect() as conn:
        return {reason: count for reason, count in await conn.execute(query)}
