"""The KPI use case: one report for a time range, read in one snapshot, traced and timed.

The report is a plain JSON-ready mapping (the HTTP layer declares its schema); every section
says where its numbers come from in `sources`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from loguru import logger
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kora.kernel import Clock
from kora.kpis import queries
from kora.kpis.domain import (
    FAILED_STATUS,
    PENDING_STATUSES,
    PERCENTILES,
    REVERSED_STATUSES,
    SUCCEEDED_STATUSES,
    FailureCause,
    KpiRange,
    failure_cause,
    parse_range,
    ratio,
)

_tracer = trace.get_tracer("kora.kpis")

SOURCES = {
    "payments": "payments table: the payments created in the range, by their current status (exact, live)",
    "success": "payments table: status and failure_code of the payments created in the range",
    "settlement.delays": "payments.captured_at and the SETTLED row of payment_status_history, settled in the range",
    "settlement.settled": "payment_status_history: SETTLED rows in the range; actor `reconciliation` = applied "
    "from reconciliation.settlement_confirmed events by the `settlement` consumer",
    "settlement.unsettled": "payments table: provider payments CAPTURED and not SETTLED, as of `as_of` "
    "(not bounded by the range)",
    "reconciliation": "only what the reconciliation service told the core through its events: "
    "reconciliation.settlement_confirmed (payments it matched, settled by actor `reconciliation`) and "
    "reconciliation.mismatch_confirmed (payment_flags, each with the amount at stake as the service sent it). "
    "Mismatches still under review in the reconciliation service are not known to the core: see its API "
    "(/v1/recon/...) and the kora_recon_* metrics",
    "providers": "payments table (final provider, status, failure_code) and the audit trail's "
    "payment.<type>.rerouted records (a provider that certainly did not take a payment)",
    "retries": "the audit trail's payment.<type>.rerouted records in the range; transport retries inside one "
    "provider call are only in Prometheus (kora_provider_retries_total)",
    "daily": "the `kpi` consumer's projection (kpi_daily_payments, kpi_daily_customers): per UTC day of the "
    "event, statuses reached; as fresh as that consumer (its lag is kora_consumer_lag)",
}


class KpiService:
    """Leadership KPIs, exact, from the core's database. Reads only; never writes."""

    def __init__(self, engine: AsyncEngine, clock: Clock, *, registry: CollectorRegistry | None = None) -> None:
        self._engine = engine
        self._clock = clock
        self._duration = Histogram(
            "kora_kpi_query_duration_seconds",
            "Time to compute one KPI report (all its queries, one snapshot).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )

    def range(self, raw_from: str | None, raw_to: str | None) -> KpiRange:
        """Parse the range the caller asked for (today by default). Raises InvalidRange."""
        return parse_range(raw_from, raw_to, now=self._clock.now())

    async def report(self, window: KpiRange) -> dict[str, Any]:
        """Every KPI for `window` (see SOURCES for where each comes from)."""
        started = time.perf_counter()
        attributes = {"kora.kpi.from": window.start.isoformat(), "kora.kpi.to": window.end.isoformat()}
        with _tracer.start_as_current_span("kpis.report", attributes=attributes):
            now = self._clock.now()
            async with self._snapshot() as conn:
                cohort = await queries.cohort(conn, window)
                delays = await queries.settlement_delays(conn, window)
                settled = await queries.settled(conn, window)
                unsettled = await queries.unsettled(conn, now)
                flags = await queries.mismatch_flags(conn, window)
                flagged = await queries.flagged_payments(conn, window)
                reroutes = await queries.reroutes(conn, window)
                daily = await queries.daily(conn, window)
                customers = await queries.daily_customers(conn, window)
        elapsed = time.perf_counter() - started
        self._duration.observe(elapsed)
        logger.info(
            "kpi report computed",
            range_from=window.start.isoformat(),
            range_to=window.end.isoformat(),
            payments=sum(row.count for row in cohort),
            seconds=round(elapsed, 4),
        )
        return {
            "range": {"from": window.start.isoformat(), "to": window.end.isoformat(), "as_of": now.isoformat()},
            "payments": _payments(cohort),
            "success": _success(cohort),
            "settlement": _settlement(delays, settled, unsettled),
            "reconciliation": _reconciliation(settled, flags, flagged),
            "providers": _providers(cohort, reroutes),
            "retries": _retries(cohort, reroutes),
            "daily": {
                "payments": [
                    {
                        "day": row.day,
                        "payment_type": row.payment_type,
                        "currency": row.currency,
                        "status": row.status,
                        "count": row.count,
                        "amount": row.amount,
                        "fees": row.fees,
                    }
                    for row in daily
                ],
                "new_customers": [{"day": day, "count": n} for day, n in customers],
            },
            "sources": dict(SOURCES),
        }

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncConnection]:
        """One read transaction: REPEATABLE READ on PostgreSQL (SQLite's are serializable)."""
        async with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin() as tx:
                yield conn
                await tx.rollback()  # nothing was written; a read-only transaction ends either way


def _is_failure(row: queries.CohortRow) -> bool:
    return row.status == FAILED_STATUS and failure_cause(row.failure_code) is not FailureCause.CANCELLED


def _payments(cohort: list[queries.CohortRow]) -> dict[str, Any]:
    by_type: dict[tuple[str, str], dict[str, int]] = defaultdict(_counters)
    by_currency: dict[str, dict[str, int]] = defaultdict(_counters)
    for row in cohort:
        for bucket in (by_type[(row.payment_type, row.currency)], by_currency[row.currency]):
            _count(bucket, row)
    return {
        "by_type": [
            {"payment_type": kind, "currency": currency, **_with_rate(c)}
            for (kind, currency), c in sorted(by_type.items())
        ],
        "by_currency": [{"currency": currency, **_with_rate(c)} for currency, c in sorted(by_currency.items())],
    }


def _counters() -> dict[str, int]:
    return dict.fromkeys(("count", "succeeded", "failed", "cancelled", "pending", "reversed", "volume", "fees"), 0)


def _count(bucket: dict[str, int], row: queries.CohortRow) -> None:
    bucket["count"] += row.count
    if row.status in SUCCEEDED_STATUSES:
        bucket["succeeded"] += row.count
        bucket["volume"] += row.amount
        bucket["fees"] += row.fees
        if row.status in REVERSED_STATUSES:
            bucket["reversed"] += row.count
    elif row.status in PENDING_STATUSES:
        bucket["pending"] += row.count
    elif _is_failure(row):
        bucket["failed"] += row.count
    else:
        bucket["cancelled"] += row.count


def _with_rate(c: dict[str, int]) -> dict[str, Any]:
    return {**c, "success_rate": ratio(c["succeeded"], c["succeeded"] + c["failed"])}


def _success(cohort: list[queries.CohortRow]) -> dict[str, Any]:
    total = _counters()
    by_cause: dict[str, int] = {cause.value: 0 for cause in FailureCause if cause is not FailureCause.CANCELLED}
    by_code: dict[str, int] = defaultdict(int)
    for row in cohort:
        _count(total, row)
        if row.status == FAILED_STATUS:
            code = row.failure_code or "unknown"
            by_code[code] += row.count
            cause = failure_cause(row.failure_code)
            if cause is not FailureCause.CANCELLED:
                by_cause[cause.value] += row.count
    finished = total["succeeded"] + total["failed"]
    return {
        "succeeded": total["succeeded"],
        "failed": total["failed"],
        "finished": finished,
        "pending": total["pending"],
        "cancelled": total["cancelled"],
        "rate": ratio(total["succeeded"], finished),
        "failed_by_cause": by_cause,
        "failed_by_code": [
            {"code": code, "cause": failure_cause(code).value, "count": n}
            for code, n in sorted(by_code.items(), key=lambda item: (-item[1], item[0]))
        ],
    }


def _settlement(
    delays: list[queries.DelayRow], settled: list[queries.SettledRow], unsettled: list[queries.UnsettledRow]
) -> dict[str, Any]:
    settled_view: dict[tuple[str, str], dict[str, Any]] = {}
    for row in settled:
        entry = settled_view.setdefault(
            (row.provider, row.currency),
            {"provider": row.provider, "currency": row.currency, "count": 0, "amount": 0, "by_reconciliation": 0},
        )
        entry["count"] += row.count
        entry["amount"] += row.amount
        if row.by_reconciliation:
            entry["by_reconciliation"] += row.count
    totals: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(("count", "amount", "overdue_count", "overdue_amount"), 0)
    )
    for u in unsettled:
        t = totals[u.currency]
        t["count"] += u.count
        t["amount"] += u.amount
        t["overdue_count"] += u.overdue_count
        t["overdue_amount"] += u.overdue_amount
    return {
        "delays": [
            {
                "provider": d.provider,
                "settled": d.settled,
                **{f"p{q}_seconds": d.percentiles[q] for q in PERCENTILES},
                "max_seconds": d.max_seconds,
                "late": d.late,
            }
            for d in delays
        ],
        "settled": [settled_view[key] for key in sorted(settled_view)],
        "unsettled": [
            {
                "provider": u.provider,
                "payment_type": u.payment_type,
                "currency": u.currency,
                "count": u.count,
                "amount": u.amount,
                "overdue_count": u.overdue_count,
                "overdue_amount": u.overdue_amount,
                "oldest_captured_at": None if u.oldest_captured_at is None else u.oldest_captured_at.isoformat(),
            }
            for u in unsettled
        ],
        "unsettled_by_currency": [{"currency": currency, **t} for currency, t in sorted(totals.items())],
    }


def _reconciliation(settled: list[queries.SettledRow], flags: list[queries.FlagRow], flagged: int) -> dict[str, Any]:
    matched = sum(row.count for row in settled if row.by_reconciliation)
    at_risk: dict[str, int] = defaultdict(int)
    for flag in flags:
        at_risk[flag.currency or "unknown"] += flag.amount
    return {
        "reconciled_payments": matched + flagged,
        "settled_by_reconciliation": matched,
        "mismatched_payments": flagged,
        "mismatch_rate": ratio(flagged, matched + flagged),
        "mismatches": [
            {
                "outcome": f.outcome,
                "reason": f.reason,
                "currency": f.currency,
                "payments": f.payments,
                "amount": f.amount,
            }
            for f in flags
        ],
        "amount_at_risk": [{"currency": currency, "amount": amount} for currency, amount in sorted(at_risk.items())],
    }


def _providers(cohort: list[queries.CohortRow], reroutes: list[queries.Reroute]) -> list[dict[str, Any]]:
    keys = ("payments", "succeeded", "failed", "declined", "provider_errors", "pending", "rerouted_away", "rerouted_in")
    table: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(keys, 0))
    for row in cohort:
        if row.provider is None:
            continue
        entry = table[row.provider]
        entry["payments"] += row.count
        if row.status in SUCCEEDED_STATUSES:
            entry["succeeded"] += row.count
        elif row.status in PENDING_STATUSES:
            entry["pending"] += row.count
        elif _is_failure(row):
            entry["failed"] += row.count
            cause = failure_cause(row.failure_code)
            if cause is FailureCause.PROVIDER_ERROR:
                entry["provider_errors"] += row.count
            elif cause is FailureCause.DECLINED:
                entry["declined"] += row.count
    for reroute in reroutes:
        table[reroute.from_provider]["rerouted_away"] += reroute.count
        table[reroute.to_provider]["rerouted_in"] += reroute.count
    result = []
    for provider, entry in sorted(table.items()):
        requests = entry["payments"] + entry["rerouted_away"]  # every request sent to it
        errors = entry["provider_errors"] + entry["rerouted_away"]  # it failed, or certainly did not take it
        result.append(
            {
                "provider": provider,
                **entry,
                "requests": requests,
                "errors": errors,
                "error_rate": ratio(errors, requests),
                "success_rate": ratio(entry["succeeded"], entry["succeeded"] + entry["failed"]),
            }
        )
    return result


def _retries(cohort: list[queries.CohortRow], reroutes: list[queries.Reroute]) -> dict[str, Any]:
    provider_payments = sum(row.count for row in cohort if row.provider is not None)
    rerouted = sum(r.count for r in reroutes)
    return {
        "provider_payments": provider_payments,
        "rerouted": rerouted,
        "retry_rate": ratio(rerouted, provider_payments),
        "reroutes": [
            {"from_provider": r.from_provider, "to_provider": r.to_provider, "count": r.count} for r in reroutes
        ],
    }
